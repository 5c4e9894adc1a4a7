"""Embedding methods behind one interface: ids -> vectors.

A table's `EncoderSpec` picks the method. Table-based methods are host-side id
transforms into one to three *physical* sub-tables plus a device-side combine,
so they reuse the stacked sparse tables, host dedup and sparse optimizers:

=============== ============================================ ==================
method          physical sub-features (ids, -1 = none)        combine
=============== ============================================ ==================
full            the feature itself                            -
hashing         ``f/hash``: h(id) % B                         -
double_hashing  ``f/hot``: the id for ids 0..k (OOV 0       mean of h1, h2
                and the k most frequent); ``f/h1``,
                ``f/h2``: two hashes of the other ids into
                one shared table of B rows
qr              ``f/q``: id // B, ``f/r``: id % B             mult | add | concat
dhe             none; the raw ids go to `FeatureEncoder`      (MLP, see `dhe`)
=============== ============================================ ==================

Sub-features are sequence features with pooling ``none`` (width 1 for a
categorical feature), so a -1 id reads a zero row and gets no gradient; the
combine runs per position and the logical feature is pooled afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jaxctr.embeddings import hashing
from jaxctr.embeddings.specs import CATEGORICAL, SEQUENCE, FeatureSpec, TableSpec

DHE_IDS = "__dhe__"  # key of the raw DHE ids in the prepared batch


@dataclasses.dataclass(frozen=True)
class Expansion:
  """How one logical feature expands into physical sub-features."""

  feature: FeatureSpec
  table: TableSpec
  subs: tuple[str, ...]  # physical feature names ((f.name,) for full, () for dhe)

  @property
  def method(self) -> str:
    return self.table.encoder.method


def _sub_tables(t: TableSpec) -> dict[str, TableSpec]:
  """Physical tables of one logical table, keyed by suffix."""
  e = t.encoder
  rep = lambda name, vocab, **kw: dataclasses.replace(
    t, name=f"{t.name}/{name}", vocab_size=vocab, encoder=type(e)(), **kw
  )
  if e.method == "hashing":
    return {"hash": rep("hash", e.num_buckets)}
  if e.method == "double_hashing":
    return {"dh": rep("dh", e.num_buckets), "hot": rep("hot", e.hot_ids + 1)}
  if e.method == "qr":
    q_rows = hashing.quotient_rows(t.vocab_size, e.num_buckets)
    if e.combine == "concat":
      d_q = t.dim - t.dim // 2
      return {"q": rep("q", q_rows, dim=d_q), "r": rep("r", e.num_buckets, dim=t.dim - d_q)}
    # A multiplicative remainder factor starts near 1 so the product starts near
    # the quotient row instead of ~init_std^2 (whose gradients would vanish).
    r_mean = 1.0 if e.combine == "mult" else 0.0
    return {"q": rep("q", q_rows), "r": rep("r", e.num_buckets, init_mean=r_mean)}
  return {}


_SUB_TABLE = {"hash": "hash", "hot": "hot", "h1": "dh", "h2": "dh", "q": "q", "r": "r"}


def expand(
  features: Sequence[FeatureSpec], tables: Mapping[str, TableSpec]
) -> tuple[tuple[Expansion, ...], tuple[FeatureSpec, ...], tuple[TableSpec, ...]]:
  """Logical features/tables -> (plans, physical features, physical tables)."""
  plans, phys_f, phys_t = [], [], {}
  for f in features:
    t = tables[f.table_name]
    m = t.encoder.method
    if m == "full":
      plans.append(Expansion(f, t, (f.name,)))
      phys_f.append(f)
      phys_t[t.name] = t
      continue
    if m == "dhe":
      plans.append(Expansion(f, t, ()))
      continue
    subt = _sub_tables(t)
    suffixes = {"hashing": ("hash",), "double_hashing": ("hot", "h1", "h2"), "qr": ("q", "r")}[m]
    suffixes = tuple(s for s in suffixes if _SUB_TABLE[s] in subt)
    subs = []
    for sfx in suffixes:
      st = subt[_SUB_TABLE[sfx]]
      phys_t[st.name] = st
      name = f"{f.name}/{sfx}"
      phys_f.append(FeatureSpec(name, SEQUENCE, st.vocab_size, f.width, "none", table=st.name))
      subs.append(name)
    plans.append(Expansion(f, t, tuple(subs)))
  return tuple(plans), tuple(phys_f), tuple(phys_t.values())


def transform(plan: Expansion, ids: np.ndarray) -> dict[str, np.ndarray]:
  """Host: logical ids [B, W] (-1 padding) -> {sub-feature name: ids [B, W]}."""
  e, f = plan.table.encoder, plan.feature
  ids = np.asarray(ids, np.int64)
  valid = ids >= 0
  if plan.method == "hashing":
    h = np.where(valid, hashing.hash_buckets(ids, e.num_buckets, e.seed), -1)
    return {f"{f.name}/hash": h}
  if plan.method == "double_hashing":
    hot, h1, h2 = hashing.double_hash(ids, e.hot_ids, e.num_buckets, e.seed)
    return {f"{f.name}/hot": hot, f"{f.name}/h1": h1, f"{f.name}/h2": h2}
  if plan.method == "qr":
    q_rows = hashing.quotient_rows(plan.table.vocab_size, e.num_buckets)
    q, r = hashing.quotient_remainder(ids, e.num_buckets, q_rows)
    return {f"{f.name}/q": q, f"{f.name}/r": r}
  raise ValueError(f"feature {f.name!r}: method {plan.method!r} has no id transform")


def combine(plan: Expansion, parts: Mapping[str, jnp.ndarray], masks: Mapping[str, jnp.ndarray]):
  """Device: sub-feature vectors [B, W, d] -> the logical feature's vector.

  Returns [B, D] for categorical and pooled sequence features, else
  ([B, L, D], mask [B, L]).
  """
  f = plan.feature
  vs = [parts[s] for s in plan.subs]
  if plan.method == "qr" and plan.table.encoder.combine == "mult":
    v = vs[0] * vs[1]
  elif plan.method == "qr" and plan.table.encoder.combine == "concat":
    v = jnp.concatenate(vs, axis=-1)
  elif plan.method == "double_hashing":
    # The paper sums the two hashed rows; with per-coordinate adaptive optimizers
    # (Adam) each row moves ~lr per step, so a sum moves twice as fast as a full
    # row. Averaging keeps a full table's step size (quick benchmark: AUC 0.653
    # with the sum, 0.668 with the mean, full table 0.668). Hot ids read zero
    # hashed rows, so they keep exactly their own row.
    hot = [parts[s] for s in plan.subs if s.endswith("/hot")]
    cold = [parts[s] for s in plan.subs if not s.endswith("/hot")]
    v = sum(hot, 0.5 * (cold[0] + cold[1]))
  else:  # hashing, qr add
    v = sum(vs[1:], vs[0])
  mask = masks[plan.subs[0]]
  for s in plan.subs[1:]:
    mask = jnp.maximum(mask, masks[s])
  if f.kind == CATEGORICAL:
    return v[:, 0]
  if f.pooling == "none":
    return v * mask[..., None], mask
  # Masked positions may hold a remainder factor's product with a zero row; zero them.
  return pool(v * mask[..., None], mask, f.pooling)


def pool(v: jnp.ndarray, mask: jnp.ndarray, pooling: str) -> jnp.ndarray:
  """[B, L, D] vectors with zeros at padded positions, mask [B, L] -> [B, D].

  ``max`` takes the maximum over real positions only (a zero padding row would
  otherwise win over negative values); an all-padding sequence pools to zeros.
  """
  if pooling == "max":
    real = mask[..., None] > 0
    best = jnp.max(jnp.where(real, v, -jnp.inf), axis=1)
    return jnp.where(real.any(axis=1), best, 0.0).astype(v.dtype)
  pooled = v.sum(axis=1)  # padded positions hold zeros
  if pooling == "mean":
    pooled = pooled / jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
  return pooled
