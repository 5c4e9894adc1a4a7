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
POOLINGS = ("sum", "mean", "none")


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
    pooling: How a sequence becomes one vector: `sum`, `mean`, or `none`
      (keep positions, for behaviour models).
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


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One embedding table.

  Attributes:
    name: Table name (unique).
    vocab_size: Number of rows.
    dim: Width of a row.
    init_std: Rows are initialised from N(0, init_std^2).
    optimizer: The sparse optimizer that updates touched rows.
    dtype: Storage dtype of the rows.
  """

  name: str
  vocab_size: int
  dim: int
  init_std: float = 1e-4
  optimizer: OptimizerSpec = OptimizerSpec()
  dtype: str = "float32"

  def __post_init__(self):
    if self.vocab_size < 1:
      raise SpecError(f"table {self.name!r}: vocab_size must be >= 1, got {self.vocab_size}")
    if self.dim < 1:
      raise SpecError(f"table {self.name!r}: dim must be >= 1, got {self.dim}")
    if self.init_std < 0:
      raise SpecError(f"table {self.name!r}: init_std must be >= 0, got {self.init_std}")
