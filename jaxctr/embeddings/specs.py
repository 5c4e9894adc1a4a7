"""Frozen declarations of features and embedding tables.

A `FeatureSpec` says what one input column is (categorical id, variable-length id
sequence, or numeric value). A `TableSpec` says how ids become vectors: rows,
width, initialiser and the sparse optimizer that updates it. Several features
may share one table (`FeatureSpec.table`). Both are plain frozen dataclasses so
they can be hashed, compared, and written to / read from JSON with the prepared
dataset.
"""

from __future__ import annotations

import dataclasses
from typing import Any

CATEGORICAL = "categorical"
SEQUENCE = "sequence"
NUMERIC = "numeric"
FEATURE_KINDS = (CATEGORICAL, SEQUENCE, NUMERIC)
POOLINGS = ("sum", "mean", "max", "none")


class SpecError(ValueError):
  """A feature, table or optimizer declaration is invalid."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """One input feature.

  Attributes:
    name: Column name in the prepared dataset.
    kind: `categorical` (one id per example), `sequence` (up to `max_len` ids,
      padded with -1) or `numeric` (one float).
    vocab_size: Number of distinct encoded ids, including the OOV id 0
      (categorical and sequence features only).
    max_len: Padded length of a sequence feature.
    pooling: How a sequence becomes one vector: `sum`, `mean`, `max` (over the
      real positions; an empty sequence gives zeros) or `none` (keep positions,
      [B, L, D] with a mask, for behaviour models).
    table: Name of the embedding table; defaults to the feature's own name.
      Features that name the same table share its rows.
  """

  name: str
  kind: str
  vocab_size: int = 0
  max_len: int = 1
  pooling: str = "sum"
  table: str | None = None

  def __post_init__(self):
    if not self.name:
      raise SpecError("FeatureSpec.name must be non-empty")
    if self.kind not in FEATURE_KINDS:
      raise SpecError(
        f"feature {self.name!r}: unknown kind {self.kind!r}; expected one of {FEATURE_KINDS}"
      )
    if self.kind != NUMERIC and self.vocab_size < 1:
      raise SpecError(f"feature {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
    if self.kind == SEQUENCE and self.max_len < 1:
      raise SpecError(f"feature {self.name!r}: max_len must be >= 1, got {self.max_len}")
    if self.pooling not in POOLINGS:
      raise SpecError(
        f"feature {self.name!r}: unknown pooling {self.pooling!r}; expected one of {POOLINGS}"
      )

  @property
  def table_name(self) -> str:
    return self.table or self.name

  @property
  def width(self) -> int:
    """Number of id positions per example (1 for categorical)."""
    return self.max_len if self.kind == SEQUENCE else 1

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> FeatureSpec:
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """A sparse (row-wise) optimizer for an embedding table.

  Attributes:
    name: One of `jaxctr.embeddings.optimizers.OPTIMIZERS`.
    learning_rate: Step size.
    b1, b2: Adam moment decay rates.
    eps: Denominator epsilon.
    initial_accumulator: Adagrad starting accumulator value.
    weight_decay: L2 coefficient applied to the touched rows (decoupled for
      Adam-family optimizers, added to the gradient otherwise).
    clip_norm: If > 0, each row's gradient is clipped to this L2 norm.
    l1, l2, lr_power, beta: FTRL-Proximal parameters.
  """

  name: str = "adam_lazy"
  learning_rate: float = 1e-3
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  initial_accumulator: float = 0.0
  weight_decay: float = 0.0
  clip_norm: float = 0.0
  l1: float = 0.0
  l2: float = 0.0
  lr_power: float = -0.5
  beta: float = 1.0


METHODS = ("full", "hashing", "double_hashing", "qr", "dhe")
QR_COMBINES = ("mult", "add", "concat")
DHE_DISTS = ("uniform", "gaussian")
DTYPES = ("float32", "bfloat16", "float16", "int16", "int8")
_DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def canonical_dtype(name: str) -> str:
  """`fp32`/`bf16`/`fp16` -> numpy names; other names pass through."""
  return _DTYPE_ALIASES.get(name, name)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  """How a table turns ids into vectors (see `jaxctr.embeddings.encoders`).

  Attributes:
    method: `full` (one row per id), `hashing` (ids hashed into `num_buckets`
      rows), `double_hashing` (OOV 0 and ids 1..`hot_ids` own rows, the rest the mean of
      two hashed rows out of `num_buckets`), `qr` (quotient and remainder
      tables, `num_buckets` remainder rows) or `dhe` (no table: an MLP on
      `dhe_k` hash encodings).
    num_buckets: Hashed rows (hashing, double_hashing) or remainder rows (qr).
    hot_ids: Number of most frequent ids with their own rows (double_hashing).
    combine: How qr combines its two vectors: `mult`, `add` or `concat`.
    seed: Hash seed; a fixed seed gives the same buckets on every machine.
    dhe_k: Number of hash functions of DHE.
    dhe_dist: Distribution of the DHE dense encoding, `uniform` or `gaussian`.
    dhe_hidden: Hidden widths of the DHE MLP.
  """

  method: str = "full"
  num_buckets: int = 0
  hot_ids: int = 0
  combine: str = "mult"
  seed: int = 0
  dhe_k: int = 1024
  dhe_dist: str = "uniform"
  dhe_hidden: tuple[int, ...] = (256,)

  def validate(self, where: str, vocab_size: int, dim: int) -> None:
    def bad(msg):
      raise SpecError(f"{where}: {msg}")

    if self.method not in METHODS:
      bad(f"unknown embedding method {self.method!r}; expected one of {METHODS}")
    if self.method in ("hashing", "double_hashing", "qr") and self.num_buckets < 1:
      bad(f"method {self.method!r} needs num_buckets >= 1, got {self.num_buckets}")
    if self.method == "double_hashing" and not 0 <= self.hot_ids <= vocab_size:
      bad(f"hot_ids must be in [0, {vocab_size}], got {self.hot_ids}")
    if self.method == "qr":
      if self.combine not in QR_COMBINES:
        bad(f"unknown qr combine {self.combine!r}; expected one of {QR_COMBINES}")
      if self.combine == "concat" and dim < 2:
        bad(f"qr combine 'concat' splits the row in two, which needs dim >= 2, got {dim}")
    if self.method == "dhe":
      if self.dhe_k < 2 or self.dhe_k % 2:
        bad(f"dhe_k must be even and >= 2, got {self.dhe_k}")
      if self.dhe_dist not in DHE_DISTS:
        bad(f"unknown dhe_dist {self.dhe_dist!r}; expected one of {DHE_DISTS}")
      if any(h < 1 for h in self.dhe_hidden):
        bad(f"dhe_hidden widths must be >= 1, got {self.dhe_hidden}")


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One embedding table.

  Attributes:
    name: Table name (unique).
    vocab_size: Number of rows.
    dim: Width of a row.
    init_std: Rows are initialised from N(0, init_std^2).
    optimizer: The sparse optimizer that updates touched rows.
    dtype: Storage dtype of the rows: float32, bfloat16, float16, or int16/int8
      with a per-row fp32 scale; low-precision rows are written with
      stochastic rounding.
    encoder: How ids become vectors (full table, hashing, QR, DHE, ...).
    init_mean: Mean of the initial rows (1 for multiplicative QR factors).
  """

  name: str
  vocab_size: int
  dim: int
  init_std: float = 1e-4
  optimizer: OptimizerSpec = OptimizerSpec()
  dtype: str = "float32"
  encoder: EncoderSpec = EncoderSpec()
  init_mean: float = 0.0

  def __post_init__(self):
    object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
    if self.dtype not in DTYPES:
      raise SpecError(
        f"table {self.name!r}: unknown dtype {self.dtype!r}; expected one of {DTYPES}"
      )
    self.encoder.validate(f"table {self.name!r}", self.vocab_size, self.dim)
    if self.vocab_size < 1:
      raise SpecError(f"table {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
    if self.dim < 1:
      raise SpecError(f"table {self.name!r}: dim must be >= 1, got {self.dim}")
    if self.init_std < 0:
      raise SpecError(f"table {self.name!r}: init_std must be >= 0, got {self.init_std}")
