"""Streaming statistics, vocabularies, `DatasetInfo` and the `Encoder`.

Preparation makes two passes. Pass 1 streams parsed chunks through `StatsCollector`, which
counts ids per categorical field (memory bounded by vocabulary size, not file size) and
accumulates numeric statistics (moments of raw and log1p values, min/max, missing count
and a fixed-size deterministic sample for quantiles). `build_vocabularies` keeps ids seen at
least `min_count` times; kept ids are numbered 1..V by descending count (so hot rows sit
together at the start of each table) and everything else maps to the OOV id 0. Pass 2
encodes rows with an `Encoder`, which serving reuses so that both encode identically.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import numpy as np

from jaxctr.data import feature_hash, sketch
from jaxctr.embeddings.specs import CATEGORICAL, NUMERIC, FeatureSpec

INFO_FILE = "jaxctr_info.json"
VOCAB_FILE = "jaxctr_vocab.npz"
SAMPLE_SIZE = 4096
VOCAB, HASH, MODULO = "vocab", "hash", "modulo"  # how a categorical feature gets ids
FILLS = ("zero", "mean")
TRANSFORMS = ("log1p_standardize", "log1p", "none")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
  """How raw values become model inputs.

  Attributes:
    min_count: Categorical ids seen fewer times in the training split map to OOV (0).
    numeric_fill: Raw value used for a missing numeric cell: `zero` or the training `mean`.
    numeric_transform: `log1p_standardize` (sign(x) * log1p(|x|), then standardised with
      training statistics), `log1p` or `none`.
    hash_features: Categorical features declared `hash` (names, or `all`): no vocabulary;
      raw tokens become ids by `feature_hash.hash_ids` (int64 in [2**62, 2**63)), except the
      `hash_hot_ids` most frequent training tokens (found by a bounded-memory sketch,
      `sketch.HotSet`), which are numbered 1..k by frequency so double hashing's hot rows
      work as with vocabularies. Prepared `cat` columns are then int64.
    max_table_rows: If > 0, the other categorical features get no vocabulary either: the raw
      key modulo `max_table_rows` is the id, a blank token 0 (MLPerf DLRM's cap on table
      rows, `--max-ind-range`).
    vocab_rows: If > 0, vocabularies count only the first `vocab_rows` training rows (a
      vocabulary from an earlier window, as when it is refreshed less often than training).
  """

  min_count: int = 1
  numeric_fill: str = "zero"
  numeric_transform: str = "log1p_standardize"
  hash_features: tuple[str, ...] = ()
  hash_hot_ids: int = 1024
  max_table_rows: int = 0
  vocab_rows: int = 0

  def __post_init__(self):
    hf = self.hash_features
    object.__setattr__(self, "hash_features", (hf,) if isinstance(hf, str) else tuple(hf))
    for key in ("hash_hot_ids", "max_table_rows", "vocab_rows"):
      if int(getattr(self, key)) < 0:
        raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
    if self.numeric_fill not in FILLS:
      raise ValueError(f"numeric_fill must be one of {FILLS}, got {self.numeric_fill!r}")
    if self.numeric_transform not in TRANSFORMS:
      raise ValueError(
        f"numeric_transform must be one of {TRANSFORMS}, got {self.numeric_transform!r}"
      )


def signed_log1p(x: np.ndarray) -> np.ndarray:
  return np.copysign(np.log1p(np.abs(x)), x)


class _Counter:
  """Counts int64 keys; per-chunk counts are merged lazily so merging stays amortised O(V)."""

  def __init__(self):
    self.keys = np.zeros(0, np.int64)
    self.counts = np.zeros(0, np.int64)
    self._pending: list[tuple[np.ndarray, np.ndarray]] = []
    self._pending_len = 0

  def add(self, values: np.ndarray) -> None:
    k, c = np.unique(values, return_counts=True)
    self._pending.append((k, c))
    self._pending_len += len(k)
    if self._pending_len > max(len(self.keys), 1 << 16):
      self._merge()

  def _merge(self) -> None:
    if not self._pending:
      return
    keys = np.concatenate([self.keys] + [k for k, _ in self._pending])
    counts = np.concatenate([self.counts] + [c for _, c in self._pending])
    self.keys, inv = np.unique(keys, return_inverse=True)
    self.counts = np.bincount(inv, weights=counts, minlength=len(self.keys)).astype(np.int64)
    self._pending, self._pending_len = [], 0

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    self._merge()
    return self.keys, self.counts


class StatsCollector:
  """Pass-1 accumulator of categorical counts and numeric statistics."""

  def __init__(
    self,
    num_categorical: int,
    num_numeric: int,
    seed: int = 0,
    *,
    modes: tuple[str, ...] | None = None,
    hot_ids: int = 0,
    vocab_rows: int = 0,
  ):
    self.modes = modes or (VOCAB,) * num_categorical
    # Only vocabulary features are counted exactly; hashed ones get bounded-memory sketches.
    self.counters = [_Counter() if m == VOCAB else None for m in self.modes]
    # Hot sets from every 4th row (see sketch.HotSet), twice as many candidates as kept.
    self.hot = [
      sketch.HotSet(2 * hot_ids, sample_every=4) if m == HASH else None for m in self.modes
    ]
    self.distinct = [sketch.DistinctCount() if m == HASH else None for m in self.modes]
    self.hot_ids, self.vocab_rows, self.rows_counted = hot_ids, vocab_rows, 0
    self.sizes: list[int] | None = None  # set by `vocabularies`
    n = num_numeric
    self.count = np.zeros(n, np.int64)
    self.missing = np.zeros(n, np.int64)
    self.min = np.full(n, np.inf)
    self.max = np.full(n, -np.inf)
    self.sums = np.zeros((4, n))  # sum, sum of squares, of raw and of signed log1p
    self._rng = np.random.default_rng(seed)
    # Random-priority sample: keep the SAMPLE_SIZE values with the smallest priorities,
    # a deterministic, bounded-memory uniform sample of each column.
    self._sample = [np.zeros(0) for _ in range(n)]
    self._prio = [np.zeros(0) for _ in range(n)]

  def update(self, cat: np.ndarray, num: np.ndarray) -> None:
    cat_t = np.ascontiguousarray(cat.T)  # one transpose instead of a strided copy per field
    take = len(cat)
    if self.vocab_rows:
      take = max(0, min(take, self.vocab_rows - self.rows_counted))
    self.rows_counted += take
    for f, counter in enumerate(self.counters):
      if counter is not None and take:
        counter.add(cat_t[f, :take])
      if self.hot[f] is not None:
        self.hot[f].add(cat_t[f])
        self.distinct[f].add(cat_t[f])
    if num.shape[1] == 0 or len(num) == 0:
      return
    miss = np.isnan(num)
    nmiss = miss.sum(0)
    self.missing += nmiss
    self.count += len(num) - nmiss
    x = np.where(miss, 0.0, num)
    lx = signed_log1p(x)
    self.sums += np.stack([x.sum(0), (x * x).sum(0), lx.sum(0), (lx * lx).sum(0)])
    # Per-column work on a transposed copy: reductions along contiguous rows are several
    # times faster than along axis 0. fmin/fmax skip NaN (an all-missing column gives NaN,
    # which fmin/fmax then skip too).
    num_t = np.ascontiguousarray(num.T)
    self.min = np.fmin(self.min, np.fmin.reduce(num_t, axis=1))
    self.max = np.fmax(self.max, np.fmax.reduce(num_t, axis=1))
    prio_t = np.ascontiguousarray(self._rng.random(num.shape).T)
    # A value can only enter a full sample if its priority beats the sample's largest one.
    limit = np.array([p.max() if len(p) >= SAMPLE_SIZE else np.inf for p in self._prio])
    cand_t = (prio_t < limit[:, None]) & ~np.isnan(num_t)
    for j in range(num.shape[1]):
      ok = cand_t[j]
      v = np.concatenate([self._sample[j], num_t[j, ok]])
      p = np.concatenate([self._prio[j], prio_t[j, ok]])
      if len(v) > SAMPLE_SIZE:
        keep = np.argpartition(p, SAMPLE_SIZE)[:SAMPLE_SIZE]
        v, p = v[keep], p[keep]
      self._sample[j], self._prio[j] = v, p

  def vocabularies(self, names: tuple[str, ...], cfg: PreprocessConfig) -> list[Vocabulary]:
    """Per categorical feature its `Vocabulary` (a hashed feature's: its hot set).

    Their sizes (`FeatureSpec.vocab_size`) are kept in `self.sizes`.
    """
    vocabs, sizes = [], []
    for f, (name, mode) in enumerate(zip(names, self.modes, strict=True)):
      if mode == VOCAB:
        v = build_vocabulary(*self.counters[f].result(), cfg.min_count)
        vocabs.append(v)
        sizes.append(v.size)
      elif mode == HASH:
        raw, _ = self.hot[f].ranked(self.hot_ids)
        k = len(raw)
        vocabs.append(_ranked_vocabulary(feature_hash.hash_ids(raw, name)))
        # Bucketed methods size their tables as fractions of this (hashed ids exceed it).
        sizes.append(max(self.distinct[f].estimate(), k) + 1)
      else:
        vocabs.append(_ranked_vocabulary(np.zeros(0, np.int64)))
        sizes.append(cfg.max_table_rows)
    self.sizes = sizes
    return vocabs

  def numeric_stats(self, names: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = []
    for j, name in enumerate(names):
      c = max(int(self.count[j]), 1)
      mean, lmean = self.sums[0, j] / c, self.sums[2, j] / c
      std = float(np.sqrt(max(self.sums[1, j] / c - mean**2, 0.0)))
      lstd = float(np.sqrt(max(self.sums[3, j] / c - lmean**2, 0.0)))
      qs = (
        np.quantile(self._sample[j], [0.01, 0.25, 0.5, 0.75, 0.99])
        if len(self._sample[j])
        else [0.0] * 5
      )
      out.append(
        {
          "name": name,
          "count": int(self.count[j]),
          "missing": int(self.missing[j]),
          "min": float(self.min[j]) if self.count[j] else 0.0,
          "max": float(self.max[j]) if self.count[j] else 0.0,
          "mean": float(mean),
          "std": std,
          "log1p_mean": float(lmean),
          "log1p_std": lstd,
          "quantiles": {
            q: float(v) for q, v in zip(("p01", "p25", "p50", "p75", "p99"), qs, strict=True)
          },
        }
      )
    return tuple(out)


_EMPTY = np.iinfo(np.int64).min  # never a raw key (keys are hashes >= 0, ids, or -1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class _HashIndex:
  """Vectorised open-addressing hash table (linear probing, load <= 0.5) from keys to ids.

  Looking up n keys takes a couple of gather rounds instead of n binary searches, which made
  `searchsorted` the largest single cost of encoding.
  """

  def __init__(self, keys: np.ndarray, ids: np.ndarray):
    self.bits = max(4, int(2 * len(keys)).bit_length())
    self.mask = (1 << self.bits) - 1
    self.keys = np.full(1 << self.bits, _EMPTY, np.int64)
    self.ids = np.zeros(1 << self.bits, np.int32)
    slot = self._slot(keys)
    pending = np.arange(len(keys))
    while len(pending):
      s = slot[pending]
      free = self.keys[s] == _EMPTY
      # Several keys may want one free slot: the first wins, the rest probe on.
      won_slots, first = np.unique(s[free], return_index=True)
      winners = pending[free][first]
      self.keys[won_slots], self.ids[won_slots] = keys[winners], ids[winners]
      placed = np.zeros(len(keys), bool)
      placed[winners] = True
      pending = pending[~placed[pending]]
      slot[pending] = (slot[pending] + 1) & self.mask

  def _slot(self, keys: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
      h = np.asarray(keys, np.int64).view(np.uint64) * _GOLDEN  # a view: no cast copy
    h >>= np.uint64(64 - self.bits)
    return h.view(np.int64)

  def lookup(self, query: np.ndarray) -> np.ndarray:
    slot = self._slot(query)
    # First probe for all keys without index bookkeeping (most keys end there: a hit, or an
    # empty slot for OOV); only the rest go through the compacting probe loop below, which
    # spares most keys its index bookkeeping.
    found = self.keys.take(slot)
    hit = found == query
    out = self.ids.take(slot)
    out *= hit
    idx = np.flatnonzero(~hit & (found != _EMPTY))
    slot = (slot[idx] + 1) & self.mask
    while len(idx):
      found = self.keys[slot]
      hit = found == query[idx]
      out[idx[hit]] = self.ids[slot[hit]]
      go_on = ~hit & (found != _EMPTY)
      idx, slot = idx[go_on], (slot[go_on] + 1) & self.mask
    return out


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Raw keys of one field (sorted) and their encoded ids (1..V)."""

  keys: np.ndarray
  ids: np.ndarray

  @property
  def size(self) -> int:
    """Encoded vocabulary size including the OOV id 0."""
    return len(self.keys) + 1

  @functools.cached_property
  def _index(self) -> _HashIndex:
    return _HashIndex(np.asarray(self.keys, np.int64), np.asarray(self.ids, np.int32))

  def encode(self, keys: np.ndarray) -> np.ndarray:
    """Encoded ids of raw keys; unknown keys map to the OOV id 0."""
    keys = np.asarray(keys, np.int64)
    return self._index.lookup(keys.reshape(-1)).reshape(keys.shape)


def build_vocabulary(keys: np.ndarray, counts: np.ndarray, min_count: int) -> Vocabulary:
  keep = counts >= min_count
  srt = np.argsort(keys[keep], kind="stable")  # Vocabulary.encode binary-searches the keys
  k, c = keys[keep][srt], counts[keep][srt]
  order = np.lexsort((k, -c))  # by descending count, ties by key: deterministic
  ids = np.empty(len(k), np.int32)
  ids[order] = np.arange(1, len(k) + 1, dtype=np.int32)
  return Vocabulary(k, ids)


def _ranked_vocabulary(keys_by_rank: np.ndarray) -> Vocabulary:
  """Keys in rank order -> ids 1..k."""
  keys = np.asarray(keys_by_rank, np.int64)
  srt = np.argsort(keys, kind="stable")
  return Vocabulary(keys[srt], (srt + 1).astype(np.int32))


def categorical_modes(cfg: PreprocessConfig, names: tuple[str, ...]) -> tuple[str, ...]:
  """`vocab`, `hash` or `modulo` per categorical feature (see `PreprocessConfig`)."""
  hashed = set(cfg.hash_features)
  if "all" in hashed:
    hashed = set(names)
  unknown = sorted(hashed - set(names))
  if unknown:
    raise ValueError(
      f"hash_features: {unknown} are not categorical features of this dataset; "
      f"expected some of {list(names)} or 'all'"
    )
  other = MODULO if cfg.max_table_rows else VOCAB
  return tuple(HASH if n in hashed else other for n in names)


def cat_dtype(modes: tuple[str, ...]) -> type:
  """Stored dtype of `cat`: int64 when a feature is hashed (ids >= 2**62), else int32."""
  return np.int64 if HASH in modes else np.int32


def identity_vocabulary(size: int) -> Vocabulary:
  """Keys 1..size map to themselves (synthetic data, where ids are already dense)."""
  ids = np.arange(1, size + 1, dtype=np.int32)
  return Vocabulary(ids.astype(np.int64), ids)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Everything training and serving need to know about a prepared dataset.

  Attributes:
    name: Dataset name.
    features: Column specs in order: the categorical ones (columns of `cat`), then the
      numeric ones (columns of `num`).
    num_examples: Rows per split.
    oracle_auc: AUC of the planted logit per split (synthetic data only).
    group_feature: Name of a feature to group AUC by (e.g. user), if any.
    numeric_stats: Per numeric feature statistics of the training split.
    preprocess: The `PreprocessConfig` as a dict.
    source_format: Raw format (`criteo`, `avazu`, `libfm`, `synthetic`).
    format_kwargs: Parser options needed to parse raw rows the same way.
    chunk_rows: Rows per stored record (the last record of a split may be shorter).
    positive_rate: Label mean per split.
    extra: Free-form details (e.g. parse error counts, synthetic config).
  """

  name: str
  features: tuple[FeatureSpec, ...]
  num_examples: dict[str, int]
  oracle_auc: dict[str, float] | None = None
  group_feature: str | None = None
  numeric_stats: tuple[dict[str, Any], ...] = ()
  preprocess: dict[str, Any] = dataclasses.field(default_factory=dict)
  source_format: str = ""
  format_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  chunk_rows: int = 8192
  positive_rate: dict[str, float] = dataclasses.field(default_factory=dict)
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def categorical(self) -> tuple[FeatureSpec, ...]:
    return tuple(f for f in self.features if f.kind == CATEGORICAL)

  @property
  def numeric(self) -> tuple[FeatureSpec, ...]:
    return tuple(f for f in self.features if f.kind == NUMERIC)

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["features"] = [f.to_json() for f in self.features]
    d["numeric_stats"] = list(self.numeric_stats)
    return d

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> DatasetInfo:
    d = dict(d)
    d["features"] = tuple(FeatureSpec.from_json(f) for f in d["features"])
    d["numeric_stats"] = tuple(d.get("numeric_stats", ()))
    return cls(**d)

  def save(self, directory: str) -> None:
    with open(os.path.join(directory, INFO_FILE), "w") as fh:
      json.dump(self.to_json(), fh, indent=1)

  @classmethod
  def load(cls, directory: str) -> DatasetInfo:
    with open(os.path.join(directory, INFO_FILE)) as fh:
      return cls.from_json(json.load(fh))


def make_features(
  cat_names, vocabs: list[Vocabulary], num_names, sizes: list[int] | None = None
) -> tuple[FeatureSpec, ...]:
  sizes = sizes or [v.size for v in vocabs]
  cats = [FeatureSpec(n, CATEGORICAL, vocab_size=v) for n, v in zip(cat_names, sizes, strict=True)]
  return tuple(cats + [FeatureSpec(n, NUMERIC) for n in num_names])


class Encoder:
  """Encodes raw parsed values exactly as preparation did (vocabularies + numeric transform)."""

  def __init__(self, info: DatasetInfo, vocabs: list[Vocabulary]):
    self.info = info
    self.vocabs = vocabs
    cfg = PreprocessConfig(**info.preprocess)
    self.names = tuple(f.name for f in info.categorical)
    self.modes = categorical_modes(cfg, self.names)
    self.max_table_rows = cfg.max_table_rows
    self.transform = cfg.numeric_transform
    st = info.numeric_stats
    self.fill = np.array([s["mean"] if cfg.numeric_fill == "mean" else 0.0 for s in st])
    self.shift = np.array([s["log1p_mean"] for s in st])
    self.scale = np.array([s["log1p_std"] if s["log1p_std"] > 0 else 1.0 for s in st])

  def save(self, directory: str) -> None:
    arrays = {}
    for i, v in enumerate(self.vocabs):
      arrays[f"keys_{i}"], arrays[f"ids_{i}"] = v.keys, v.ids
    np.savez(os.path.join(directory, VOCAB_FILE), **arrays)
    self.info.save(directory)

  @classmethod
  def load(cls, directory: str) -> Encoder:
    info = DatasetInfo.load(directory)
    with np.load(os.path.join(directory, VOCAB_FILE)) as z:
      vocabs = [Vocabulary(z[f"keys_{i}"], z[f"ids_{i}"]) for i in range(len(info.categorical))]
    return cls(info, vocabs)

  def encode(self, cat_keys: np.ndarray, num_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw keys int64 [n, F] and raw numbers [n, N] (NaN = missing) -> (ids, float32).

    Ids are int32, or int64 when a feature is hashed (see `cat_dtype`).
    """
    keys_t = np.ascontiguousarray(np.asarray(cat_keys).T)
    cat_t = np.empty(keys_t.shape, cat_dtype(self.modes))
    for f, v in enumerate(self.vocabs):
      if self.modes[f] == HASH:
        h = feature_hash.hash_ids(keys_t[f], self.names[f])
        hot = v.encode(h)
        cat_t[f] = np.where(hot > 0, hot, h)
      elif self.modes[f] == MODULO:
        k = keys_t[f].astype(np.int64)
        cat_t[f] = np.where(k < 0, 0, k % self.max_table_rows)  # blank (-1) is 0, as in MLPerf
      else:
        cat_t[f] = v.encode(keys_t[f])
    cat = np.ascontiguousarray(cat_t.T)
    x = np.asarray(num_raw, np.float64)
    x = np.where(np.isnan(x), self.fill, x)
    if self.transform != "none":
      x = signed_log1p(x)
    if self.transform == "log1p_standardize":
      x = (x - self.shift) / self.scale
    return cat, x.astype(np.float32)

  def encode_lines(self, lines: list[bytes | str], strict: bool = True) -> dict[str, np.ndarray]:
    """Parses raw text rows of the source format (no header) and encodes them."""
    from jaxctr.data import parsers  # local: parsers is only needed for text rows

    data = b"".join(
      (ln.encode() if isinstance(ln, str) else ln).rstrip(b"\r\n") + b"\n" for ln in lines
    )
    kw = dict(self.info.format_kwargs)
    fmt = self.info.source_format
    fn = {
      "criteo": parsers.parse_criteo,
      "avazu": parsers.parse_avazu,
      "libfm": parsers.parse_libfm,
    }
    if fmt not in fn:
      raise ValueError(f"encode_lines does not support source format {fmt!r}")
    if fmt == "avazu":
      kw["header"] = False
    chunks = list(fn[fmt]("<rows>", blocks=[data], strict=strict, **kw))
    cat, num = self.encode(
      np.concatenate([c.cat for c in chunks]), np.concatenate([c.num for c in chunks])
    )
    out = {"cat": cat, "num": num}
    if chunks[0].label is not None:
      out["label"] = np.concatenate([c.label for c in chunks]).astype(np.float32)
    return out
