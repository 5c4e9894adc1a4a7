"""The ``partials`` exchange of sharded stacks: DES-style equivalent substitution.

In the ``rows`` exchange (`sharded`) every owner sends each requesting device
the distinct rows it asked for, and the model runs on whole field vectors.
Many CTR operators read the embeddings only through sums over fields: the
first-order term ``sum_f w_f``, FM's ``sum_f v_f`` and ``sum_f |v_f|^2``, the
first dense layer ``sum_f e_f @ W1[f]``. DES (Rong et al., SIGIR 2020) moves
the computation instead of the rows: every owner computes the operator over
the (sample, field) positions whose row it holds, for the *global* batch, and
one collective adds the owners' results and hands each device its batch slice.

Inside one `jax.shard_map` (per device):

1. the owner's distinct rows come from `EmbeddingCollection.gather` as in the
   rows exchange (same ``own_uniq``, so the sparse update is unchanged and
   stays local to owners);
2. `route` lists the global (sample, field) positions whose row each owner
   holds (about B F / n of them), so the owner scatters its rows into [B, F, D]
   fields that are zero where it does not own them (row-based), or reads every
   field's column slice (``column_wise``); terms that ignore fields (LR, FM) skip
   that buffer and sum per-id terms per sample over the owner's ids;
3. a model's `partial_terms.Terms` turns them into per-sample partial sums, and
   ``psum_scatter`` over the table axes sums the owners' parts and leaves each
   device its B/n samples; the model finishes on them (`partial_terms`).

Differentiating gives the mirror collective (an all-gather of the partials'
cotangents) and per-row gradients on the owners; the dense parameters'
gradients are all-reduced as in the rows exchange. Bytes per step: 2 (n-1) B W
values for W partial values per sample, against the rows exchange's
2 n (n-1) K D for K distinct rows per (requester, owner) pair
(`bytes_per_step`): a ratio of about n W / (F D u) for F fields, D-wide rows and
a fraction u of distinct ids. Partials pay when W is small against the rows a
sample needs (LR: W = 1, FM: W = k + 1, column_wise: W = 1) and stop paying
with more devices than fields x u, a wide first layer (W = hidden width) or
heavy id repetition; owners also compute on the global batch.

Limits (checked by `check`): every field must be a categorical feature of a
sharded stack with the plain one-row-per-id method; sequences, DHE and numeric
fields need the rows exchange.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxctr.embeddings import sharded
from jaxctr.embeddings.specs import CATEGORICAL

EXCHANGES = ("rows", "partials", "auto")


def check(coll) -> None:
  """Raises ValueError unless every field of ``coll`` can use the partials exchange."""
  if coll.placement is None or not coll.layouts:
    raise ValueError("config.embedding.exchange='partials' needs sharded tables (a strategy)")
  kinds = set()
  for s in coll.stacks:
    layout = coll.layouts.get(s.name)
    for c in s.columns:
      f = c.feature
      if layout is None:
        raise ValueError(
          f"config.embedding.exchange='partials': feature {f.name!r} sits in replicated stack "
          f"{s.name!r}; shard every table (row_wise, table_wise, table_row_wise, column_wise)"
        )
      if f.kind != CATEGORICAL:
        raise ValueError(
          f"config.embedding.exchange='partials': feature {f.name!r} is a {f.kind} feature; "
          "partial sums need one id per field (use exchange='rows')"
        )
    if layout is not None:
      kinds.add(layout.row_based)
  if len(kinds) > 1:
    raise ValueError(
      "config.embedding.exchange='partials': column_wise and row-based stacks cannot be mixed"
    )
  if any(p.method != "full" for p in coll.plans):
    raise ValueError("config.embedding.exchange='partials' needs config.embedding.method='full'")


def enable(coll) -> None:
  """Makes ``coll.prepare`` leave its sharded stacks unrouted; `prepare` routes them."""
  check(coll)
  coll.deferred_routing |= set(coll.layouts)


def route(layout: sharded.Layout, uniq: np.ndarray, inv: np.ndarray, granule: int = 0):
  """Host-side plan of one stack: the rows exchange's ``own_uniq`` plus where owned rows go.

  Returns:
    ``own_uniq``: as `sharded.route` (so gather and the sparse update are shared);
    row-based: ``own_pos`` [n, M] the flat global id positions (b * C + c) each owner
    holds the row of (padding: B * C, dropped) and ``own_slot`` [n, M] that row's slot in
    its ``own_uniq`` (padding: Ko - 1, a zero row); M ~ B C / n, so an owner scatters only
    its own share of the batch. column_wise: ``pos`` = ``inv`` [B, C] into the global
    ``uniq`` (every shard holds every row's column slice).
  """
  routed = sharded.route(layout, uniq, inv, granule)
  if not layout.row_based:
    return {"own_uniq": routed["own_uniq"], "pos": inv.astype(np.int32)}
  own = routed["own_uniq"]  # [n, Ko], sorted, padding (>= shard_rows) last
  n = layout.num_shards
  virt = uniq[inv].reshape(-1)
  real = virt < layout.rows
  shard, local = layout.locate(np.where(real, virt, 0))
  mine = [np.flatnonzero(real & (shard == d)) for d in range(n)]
  granule = granule or max(8, -(-inv.size // (4 * n)))
  M = -(-(max(len(m) for m in mine) + 1) // granule) * granule
  own_pos = np.full((n, M), inv.size, np.int32)
  own_slot = np.full((n, M), own.shape[1] - 1, np.int32)
  for d, m in enumerate(mine):
    own_pos[d, : len(m)] = m
    own_slot[d, : len(m)] = np.searchsorted(own[d], local[m])
  return {"own_uniq": own, "own_pos": own_pos, "own_slot": own_slot}


def prepare(coll, batch, granule: int = 0):
  """`coll.prepare` plus the partials route of every sharded stack (see `enable`)."""
  ids = coll.prepare(batch)
  for name, layout in coll.layouts.items():
    ids[name] = route(layout, ids[name]["uniq"], ids[name]["inv"], granule)
  return ids


def put_ids(coll, ids, mesh):
  """`prepare`'s host arrays -> device arrays: owner-indexed arrays split over the table axes."""
  from jaxctr import parallel  # local import: parallel imports nothing from here

  out = {}
  for name, entry in ids.items():
    layout = coll.layouts.get(name)
    split = layout is not None and layout.row_based
    spec = P(coll.placement.axes) if split else None
    out[name] = {
      k: parallel.put_global(v, mesh, spec) if layout is not None else parallel.put_global(v, mesh)
      for k, v in entry.items()
    }
  return out


def field_order(coll) -> tuple[str, ...]:
  """Field names in `features.FeatureEncoder` order (categorical features, column order)."""
  return tuple(f.name for f in coll.logical_features if f.kind == CATEGORICAL)


def partial_sums(coll, rows, ids, owner_fn, params, batch_size: int, entry_fn=None):
  """Per-sample partial results summed over owners: a pytree of [B, ...] split with the batch.

  Args:
    coll: The sharded `EmbeddingCollection` (see `enable`).
    rows: `coll.gather`'s rows ({stack: [n, Ko, D]}, owner-split).
    ids: `prepare`'s ids, placed by `put_ids`.
    owner_fn: ``owner_fn(params, fields, cols) -> {name: [B, ...]}``: the owner's part for
      the global batch. ``fields`` [B, F, Dl] holds the owner's rows (zero where another
      device owns the (sample, field) row) or, for column_wise, every field's column slice;
      ``cols`` [Dl] gives each local column's virtual index (>= dim: padding).
    params: Replicated pytree handed to ``owner_fn`` (the model's parameters).
    batch_size: The global batch size B.
    entry_fn: Optional ``entry_fn(params, vecs) -> {name: [M, ...]}`` for terms that are
      sums over ids whatever their field (LR, FM): row-based owners then add it per sample
      over their ~B C / n ids (a segment sum) instead of building [B, F, D].
  """
  pl = coll.placement
  ax = pl.axes
  names = field_order(coll)
  stacks = [s for s in coll.stacks if s.name in coll.layouts]
  row_based = coll.layouts[stacks[0].name].row_based
  id_spec = P(ax) if row_based else P()

  def local_entries(params, *arrs):
    part = None
    for i, s in enumerate(stacks):
      r, own_pos, own_slot = arrs[3 * i][0], arrs[3 * i + 1][0], arrs[3 * i + 2][0]
      per_id = entry_fn(params, r[own_slot])  # padding slots read zero rows: zero terms
      sample = own_pos // s.width  # padding positions (B * C) fall outside: dropped
      add = jax.tree.map(lambda v: jax.ops.segment_sum(v, sample, batch_size), per_id)
      part = add if part is None else jax.tree.map(jnp.add, part, add)
    return jax.tree.map(
      lambda p: jax.lax.psum_scatter(p, ax, scatter_dimension=0, tiled=True), part
    )

  def local(params, *arrs):
    fields = {}
    for i, s in enumerate(stacks):
      r = arrs[3 * i][0]
      if row_based:  # the owner's rows at their global positions, zeros elsewhere
        own_pos, own_slot = arrs[3 * i + 1][0], arrs[3 * i + 2][0]
        x = jnp.zeros((batch_size * s.width, r.shape[-1]), r.dtype)
        x = x.at[own_pos].set(r[own_slot], mode="drop", unique_indices=True)
        x = x.reshape(batch_size, s.width, -1)  # [B, C, D]
      else:
        x = r[arrs[3 * i + 1]]  # [B, C, D/n]: every row's column slice
      for c in s.columns:
        fields[c.feature.name] = x[:, c.start]
    lay = coll.layouts[stacks[0].name]
    if row_based:
      cols = jnp.arange(lay.dim)
    else:
      cols = jax.lax.axis_index(ax) * lay.shard_dim + jnp.arange(lay.shard_dim)
    part = owner_fn(params, jnp.stack([fields[n] for n in names], axis=1), cols)
    return jax.tree.map(
      lambda p: jax.lax.psum_scatter(p, ax, scatter_dimension=0, tiled=True), part
    )

  args, specs = [], []
  for s in stacks:
    e = ids[s.name]
    # Three arrays per stack (column_wise has one index array: passed twice).
    args += [rows[s.name]] + ([e["own_pos"], e["own_slot"]] if row_based else [e["pos"], e["pos"]])
    specs += [P(ax), id_spec, id_spec]
  fn = local_entries if entry_fn is not None and row_based else local
  return pl.shard_map(fn, (P(),) + tuple(specs), P(ax))(params, *args)


# ------------------------------------------------------------------------------- bytes
def rows_bytes(batch: int, fields: int, width: int, devices: int, distinct: float = 1.0) -> int:
  """Rows exchange bytes per step (forward + backward, all devices), fp32.

  ``distinct``: the fraction of a requester's (sample, field) ids that are distinct per owner
  (1.0: no repetition, the upper bound). Each device requests B/n * F * distinct rows, of which
  (n-1)/n live elsewhere; padding to the bucketed K is ignored.
  """
  n = devices
  per_dev = batch / n * fields * distinct * width
  return int(round(2 * n * per_dev * (n - 1) / n * 4))


def partials_bytes(batch: int, width: int, devices: int) -> int:
  """Partials exchange bytes per step: reduce-scatter + its mirror all-gather of [B, W] fp32."""
  return int(2 * (devices - 1) * batch * width * 4)


def bytes_per_step(batch, fields, dim, devices, partial_width, distinct=1.0, linear=True):
  """Both modes' bytes per step, {"rows": ..., "partials": ...} (see `choose`)."""
  return {
    "rows": rows_bytes(batch, fields, dim + int(linear), devices, distinct),
    "partials": partials_bytes(batch, partial_width, devices),
  }


def choose(mode: str, admits: bool, costs: Mapping[str, int]) -> str:
  """The exchange to use: ``mode`` unless "auto", which takes the cheaper one the model allows."""
  if mode not in EXCHANGES:
    raise ValueError(f"config.embedding.exchange: {mode!r} not in {EXCHANGES}")
  if mode == "auto":
    return "partials" if admits and costs["partials"] < costs["rows"] else "rows"
  return mode


# --------------------------------------------------------------------------------- HLO
_COLLECTIVE = re.compile(
  r"=\s*(\(?[^=]*?\)?)\s+(all-to-all|reduce-scatter|all-gather|all-reduce|collective-permute)"
  r"(-start)?\("
)
_COMMENT = re.compile(r"/\*.*?\*/")
_SHAPE = re.compile(r"(pred|s8|u8|s16|u16|bf16|f16|s32|u32|f32|s64|u64|f64)\[([0-9,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2}


@dataclasses.dataclass(frozen=True)
class Collective:
  op: str
  result_bytes: int  # per device


def collectives(hlo_text: str) -> list[Collective]:
  """The collectives of a compiled (SPMD-partitioned) HLO module with their per-device result size."""
  out = []
  for line in hlo_text.splitlines():
    m = _COLLECTIVE.search(_COMMENT.sub("", line))
    if not m:
      continue
    shapes = _SHAPE.findall(m.group(1))
    if m.group(3):  # async start: the tuple holds (operand, result); count the result
      shapes = shapes[-1:]
    size = sum(
      _BYTES.get(t, 8 if t.endswith("64") else 4)
      * int(np.prod([int(d) for d in dims.split(",") if d]))
      for t, dims in shapes
    )
    out.append(Collective(m.group(2), size))
  return out


def collective_bytes(hlo_text: str, devices: int) -> int:
  """Bytes crossing devices per call of a compiled module, summed over all devices.

  Ring algorithms on ``devices`` devices: all-to-all and all-gather send (n-1)/n of their
  result, reduce-scatter (n-1) times its result, all-reduce 2 (n-1)/n of it.
  """
  n = devices
  total = 0.0
  for c in collectives(hlo_text):
    b = c.result_bytes
    if c.op in ("all-to-all", "all-gather"):
      total += n * b * (n - 1) / n
    elif c.op == "reduce-scatter":
      total += n * b * (n - 1)
    elif c.op == "all-reduce":
      total += n * 2 * b * (n - 1) / n
    else:
      total += n * b
  return int(round(total))
