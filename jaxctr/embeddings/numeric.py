"""Numeric-feature encoders: prepared values [B, N] -> dense inputs and/or field vectors.

Prepared numeric values are already signed-log1p transformed and standardised
with training statistics (`jaxctr.data.preprocess`). Encoders:

* ``raw``: the prepared values go to the network as dense inputs (default).
* ``log``: the prepared values and a second signed-log1p compression of them.
* ``field``: value x a learned vector per field, appended as fields.
* ``equal_width``, ``equal_frequency``, ``log_bucket``, ``tree``: hard
  discretisation into per-field bucket embeddings, with boundaries fitted on
  the training split (``log_bucket`` is floor(log(v)^2) of the raw value v,
  as used by Criteo winners; ``tree`` takes the splits of a greedy
  label-aware decision tree per field).
* ``bottom_mlp``: a DLRM-style MLP on all values -> one extra field.
* ``autodis``: AutoDis (Guo et al., KDD 2021): H meta-embeddings per field
  and a soft, temperature-scaled discretisation weighting them.

Fitted boundaries are `Buffer` variables of the encoder, so the checkpoint
saves them with the parameters and serving encodes exactly like training.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ENCODERS = (
  "raw",
  "log",
  "field",
  "equal_width",
  "equal_frequency",
  "log_bucket",
  "tree",
  "bottom_mlp",
  "autodis",
)
BUCKETED = ("equal_width", "equal_frequency", "log_bucket", "tree")


class Buffer(nnx.Variable):
  """Non-trainable state fitted on the training split (e.g. bucket boundaries)."""


def _pad(bounds: Sequence[np.ndarray], n: int) -> np.ndarray:
  """Per-field sorted unique boundaries, padded with +inf to [N, n]."""
  out = np.full((len(bounds), n), np.inf, np.float32)
  for j, b in enumerate(bounds):
    b = np.unique(np.asarray(b, np.float64))[:n]
    out[j, : len(b)] = b
  return out


def _tree_splits(x: np.ndarray, y: np.ndarray, leaves: int, min_leaf: int) -> np.ndarray:
  """Split points of a best-first regression tree on one field (squared error on the label)."""
  order = np.argsort(x, kind="stable")
  xs, ys = x[order], y[order].astype(np.float64)
  cy = np.concatenate([[0.0], np.cumsum(ys)])
  segs, splits = [(0, len(xs))], []

  def best(lo, hi):
    n = hi - lo
    if n < 2 * min_leaf:
      return None
    k = np.arange(lo + min_leaf, hi - min_leaf + 1)
    k = k[xs[k - 1] < xs[np.minimum(k, len(xs) - 1)]]  # only between distinct values
    if not len(k):
      return None
    sl, sr = cy[k] - cy[lo], cy[hi] - cy[k]
    nl, nr = k - lo, hi - k
    gain = sl**2 / nl + sr**2 / nr - (cy[hi] - cy[lo]) ** 2 / n
    i = int(np.argmax(gain))
    return float(gain[i]), int(k[i])

  cands = {s: best(*s) for s in segs}
  while len(splits) < leaves - 1:
    live = {s: c for s, c in cands.items() if c is not None}
    if not live:
      break
    seg = max(live, key=lambda s: live[s][0])
    k = live[seg][1]
    splits.append(0.5 * (xs[k - 1] + xs[k]))
    del cands[seg]
    for s in ((seg[0], k), (k, seg[1])):
      cands[s] = best(*s)
  return np.sort(np.asarray(splits))


def log_bucket_bounds(shift: float, scale: float, buckets: int) -> np.ndarray:
  """Boundaries in prepared-value space of floor(log(v)^2) on the raw value v.

  Raw values <= 2 keep their integer part (buckets 0, 1, 2 -> split at 1, 2);
  above 2, bucket j starts where log(v)^2 = j, i.e. v = exp(sqrt(j)).
  """
  raw = [1.0, 2.0]
  j = int(np.floor(np.log(2.0) ** 2)) + 1
  while len(raw) < buckets - 1:
    raw.append(float(np.exp(np.sqrt(j))))
    j += 1
  raw = np.asarray(raw)
  return (np.log1p(raw) - shift) / scale


def fit_boundaries(
  kind: str,
  x: np.ndarray,
  y: np.ndarray,
  buckets: int,
  stats: Sequence[dict] = (),
) -> np.ndarray:
  """Bucket boundaries [N, buckets - 1] (+inf padded) fitted on training values ``x`` [n, N]."""
  x = np.asarray(x, np.float64)
  n_fields = x.shape[1]
  bounds = []
  for j in range(n_fields):
    v = x[:, j]
    if kind == "equal_width":
      lo, hi = np.quantile(v, [0.001, 0.999])  # robust to a few extreme values
      b = np.linspace(lo, hi, buckets + 1)[1:-1] if hi > lo else [lo]
    elif kind == "equal_frequency":
      b = np.quantile(v, np.arange(1, buckets) / buckets)
    elif kind == "log_bucket":
      st = stats[j] if j < len(stats) else {}
      scale = st.get("log1p_std", 1.0) or 1.0
      b = log_bucket_bounds(st.get("log1p_mean", 0.0), scale, buckets)
    elif kind == "tree":
      b = _tree_splits(v, y, buckets, max(20, len(v) // (buckets * 20)))
    else:
      raise ValueError(f"unknown discretisation {kind!r}; expected one of {BUCKETED}")
    bounds.append(b)
  return _pad(bounds, buckets - 1)


def bucketize(x: jax.Array, bounds: jax.Array) -> jax.Array:
  """Bucket index of every value: x [B, N], bounds [N, K] -> int32 [B, N] in [0, K]."""
  return jnp.sum(x[:, :, None] >= bounds[None], axis=-1).astype(jnp.int32)


def autodis_weights(x, w1, w2, alpha, temperature):
  """AutoDis soft discretisation: x [B, N] -> bucket weights [B, N, H] summing to 1."""
  h = jax.nn.leaky_relu(x[:, :, None] * w1[None], 0.01)  # [B, N, H]
  logits = jnp.einsum("bnh,nhk->bnk", h, w2) + alpha * h
  return jax.nn.softmax(logits / temperature, axis=-1)


class NumericEncoder(nnx.Module):
  """Encodes prepared numeric values into (dense [B, M], fields [B, K, dim] or None).

  Args:
    cfg: The ``config.numeric`` section.
    num: Number of numeric fields N.
    dim: Width of a field vector (the table row width, first-order column included).
    sample: Training values [n, N] and labels [n] for fitting boundaries (bucket
      encoders only); None leaves +inf boundaries for a restore to overwrite.
    stats: `DatasetInfo.numeric_stats` (for ``log_bucket``).
    kind: The encoder (default ``cfg.encoder``).
    rngs: Initialisation randomness.
  """

  def __init__(self, cfg, num: int, dim: int, sample=None, stats=(), *, kind=None, rngs: nnx.Rngs):
    self.kind = kind or cfg.encoder
    self.num = num
    k, h = cfg.num_buckets, cfg.autodis_buckets
    init = nnx.initializers.normal(0.01)
    self.num_dense = {"raw": num, "log": 2 * num}.get(self.kind, 0)
    self.num_fields = {"raw": 0, "log": 0, "bottom_mlp": 1 if num else 0}.get(self.kind, num)
    if self.kind == "field":
      self.vectors = nnx.Param(init(rngs.params(), (num, dim)))
    elif self.kind in BUCKETED:
      if sample is not None:
        b = fit_boundaries(self.kind, sample[0], sample[1], k, stats)
      else:
        b = np.full((num, k - 1), np.inf, np.float32)
      self.bounds = Buffer(jnp.asarray(b))
      self.tables = nnx.Param(init(rngs.params(), (num, k, dim)))
    elif self.kind == "bottom_mlp":
      widths = (num, *cfg.bottom_hidden, dim)
      self.layers = nnx.List(
        [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
      )
    elif self.kind == "autodis":
      self.temperature = float(cfg.temperature)
      self.w1 = nnx.Param(nnx.initializers.normal(1.0)(rngs.params(), (num, h)))
      self.w2 = nnx.Param(nnx.initializers.normal(h**-0.5)(rngs.params(), (num, h, h)))
      self.alpha = float(cfg.autodis_alpha)
      self.meta = nnx.Param(init(rngs.params(), (num, h, dim)))

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    b = x.shape[0]
    empty = jnp.zeros((b, 0), x.dtype)
    if self.kind == "raw":
      return x, None
    if self.kind == "log":
      return jnp.concatenate([x, jnp.sign(x) * jnp.log1p(jnp.abs(x))], axis=-1), None
    if self.kind == "field":
      return empty, x[:, :, None] * self.vectors[...][None]
    if self.kind in BUCKETED:
      idx = bucketize(x, self.bounds[...])  # [B, N]
      fields = jnp.arange(self.num)[None, :]
      return empty, self.tables[...][fields, idx]
    if self.kind == "bottom_mlp":
      z = x
      for i, layer in enumerate(self.layers):
        z = layer(z)
        if i < len(self.layers) - 1:
          z = jax.nn.relu(z)
      return empty, z[:, None, :]
    if self.kind == "autodis":
      p = autodis_weights(x, self.w1[...], self.w2[...], self.alpha, self.temperature)
      return empty, jnp.einsum("bnh,nhd->bnd", p, self.meta[...])
    raise ValueError(f"unknown numeric encoder {self.kind!r}")


def training_sample(dataset, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Up to ``size`` training rows (numeric values, labels) from evenly spread chunks."""
  src = dataset.split("train")
  n_chunks = src.num_chunks
  want = max(1, min(n_chunks, -(-size // max(src.chunk_rows, 1))))
  idx = np.unique(np.linspace(0, n_chunks - 1, want).round().astype(int))
  chunks = src.chunks(idx)
  x = np.concatenate([c["num"] for c in chunks])
  y = np.concatenate([c["label"] for c in chunks])
  if len(x) > size:
    keep = np.random.default_rng(seed).choice(len(x), size, replace=False)
    x, y = x[keep], y[keep]
  return x, y
