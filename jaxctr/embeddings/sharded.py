"""Embedding stacks sharded over the devices of a mesh.

A stack (see `collection.py`) placed with a strategy other than
``data_parallel`` is stored as a *physical* array whose leading (row-based
strategies) or trailing (``column_wise``) axis is split over the mesh's
``table_shard`` axes. A `Layout` maps the stack's *virtual* rows (table offset +
id) to (shard, local row):

- ``row_wise``: contiguous ranges of ceil(rows / n) rows per device (``range``)
  or row r on device r % n at local row r // n (``mod``, which spreads hot low
  ids evenly);
- ``table_wise``: whole tables, packed largest first onto the least-loaded device;
- ``table_row_wise``: tables packed onto groups of devices (e.g. one host's),
  rows split in ranges within the group;
- ``column_wise``: every device holds all rows and a slice of the dimension.

The id exchange runs in the input pipeline: every process sees the global
batch's ids (host-side dedup already does), so `route` computes, per stack,
which local rows each device owns and serves (``own_uniq``, deduplicated across
the requesting devices) and where every id position finds its row after the
exchange (``inv``). Inside the jitted step (`jax.shard_map`):

1. owners gather their distinct rows (`gather`), a local gather;
2. owners send each requesting device its rows with one ``all_to_all``, and the
   requester indexes its ids' vectors (`exchange`); differentiating this gives
   the reverse ``all_to_all`` of the row gradients, summed per owned row;
3. each owner applies its sparse optimizer to its rows locally (`update`).

With per-process input (`route_local`, multi-process runs) a process sees only its own
rows: each device's distinct ids are bucketed by owner on the host, the requests travel to
the owners by one more ``all_to_all`` of ints inside the step, and owners sum the gradients
of rows that several devices asked for before updating them (`dedup_sum`). ``column_wise``
stacks take the same path with one request list per device: every owner holds every row,
so each device's distinct ids reach all owners (an ``all_gather`` of ints), each owner
answers with its column slice of them, and the returned ``all_to_all`` concatenates the
slices along the dimension.

Per-step communication is two all-to-alls of (devices x distinct ids per
(requester, owner) pair x dim) values: proportional to the batch's ids, never
to the vocabulary, and no table is ever all-gathered. Optimizer slots are
stored, split and updated exactly like their table.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

STRATEGIES = ("data_parallel", "table_wise", "row_wise", "column_wise", "table_row_wise")
ROW_PLACEMENTS = ("range", "mod")


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where every virtual row of one stack lives on a mesh of ``num_shards`` devices."""

  strategy: str
  num_shards: int
  rows: int  # virtual rows of the stack
  dim: int  # virtual dimension
  shard_rows: int  # rows stored per device (row-based); ``rows`` for column_wise
  shard_dim: int  # columns stored per device; ``dim`` for row-based strategies
  mod: bool = False
  seg_start: tuple[int, ...] = ()  # virtual start row of each segment, increasing
  seg_shard: tuple[int, ...] = ()
  seg_local: tuple[int, ...] = ()

  @property
  def row_based(self) -> bool:
    return self.strategy != "column_wise"

  def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(device, local row) of virtual ``rows`` (row-based layouts)."""
    rows = np.asarray(rows, np.int64)
    if self.mod:
      return rows % self.num_shards, rows // self.num_shards
    i = np.searchsorted(np.asarray(self.seg_start), rows, side="right") - 1
    start = np.asarray(self.seg_start)[i]
    return np.asarray(self.seg_shard)[i], np.asarray(self.seg_local)[i] + rows - start

  def physical_index(self) -> np.ndarray:
    """For every physical row, its virtual row (-1 for padding). Row-based only."""
    idx = np.full(self.num_shards * self.shard_rows, -1, np.int64)
    shard, local = self.locate(np.arange(self.rows))
    idx[shard * self.shard_rows + local] = np.arange(self.rows)
    return idx

  def to_physical(self, virtual: np.ndarray) -> np.ndarray:
    """Host copy of a [rows, width] array in this layout (padding is zero)."""
    virtual = np.asarray(virtual)
    if self.row_based:
      idx = self.physical_index()
      out = np.zeros((len(idx),) + virtual.shape[1:], virtual.dtype)
      out[idx >= 0] = virtual[idx[idx >= 0]]
      return out
    width = virtual.shape[1]
    if width != self.dim:  # per-row slot: each column shard keeps a copy
      return np.tile(virtual, (1, self.num_shards))
    out = np.zeros((self.rows, self.num_shards * self.shard_dim), virtual.dtype)
    out[:, : self.dim] = virtual
    return out

  def to_virtual(self, physical: np.ndarray) -> np.ndarray:
    """Inverse of `to_physical`."""
    physical = np.asarray(physical)
    if self.row_based:
      shard, local = self.locate(np.arange(self.rows))
      return physical[shard * self.shard_rows + local]
    if physical.shape[1] == self.num_shards * self.shard_dim:
      return physical[:, : self.dim]
    return physical[:, : physical.shape[1] // self.num_shards]

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> Layout:
    d = json.loads(text)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _pack(sizes: Sequence[int], bins: int) -> list[int]:
  """Greedy largest-first packing of ``sizes`` into ``bins``; returns each item's bin."""
  load = [0] * bins
  where = [0] * len(sizes)
  for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
    b = min(range(bins), key=lambda b: (load[b], b))
    where[i] = b
    load[b] += sizes[i]
  return where


def make_layout(
  strategy: str,
  table_rows: Sequence[int],
  dim: int,
  num_shards: int,
  *,
  placement: str = "range",
  group_size: int = 0,
) -> Layout:
  """The layout of a stack of tables with ``table_rows`` rows each (in stack order)."""
  if strategy not in STRATEGIES or strategy == "data_parallel":
    raise ValueError(f"no sharded layout for strategy {strategy!r}; expected one of {STRATEGIES}")
  if placement not in ROW_PLACEMENTS:
    raise ValueError(f"config.embedding.row_placement: {placement!r} not in {ROW_PLACEMENTS}")
  n = num_shards
  rows = int(sum(table_rows))
  offsets = np.concatenate([[0], np.cumsum(table_rows)[:-1]]).astype(int).tolist()
  if strategy == "column_wise":
    return Layout(strategy, n, rows, dim, rows, -(-dim // n))
  if strategy == "row_wise" and placement == "mod":
    return Layout(strategy, n, rows, dim, -(-rows // n), dim, mod=True)
  segs: list[tuple[int, int, int]] = []
  load = [0] * n
  if strategy == "row_wise":
    per = -(-rows // n)
    for d in range(n):
      if d * per < rows:
        segs.append((d * per, d, 0))
        load[d] = min(per, rows - d * per)
  elif strategy == "table_wise":
    for t, d in enumerate(_pack(table_rows, n)):
      segs.append((offsets[t], d, load[d]))
      load[d] += table_rows[t]
  else:  # table_row_wise
    g = group_size or n
    if n % g:
      raise ValueError(f"table_row_wise: group size {g} does not divide the {n} devices")
    for t, grp in enumerate(_pack(table_rows, n // g)):
      per = -(-table_rows[t] // g)
      for j in range(g):
        lo = j * per
        if lo >= table_rows[t]:
          break
        d = grp * g + j
        segs.append((offsets[t] + lo, d, load[d]))
        load[d] += min(per, table_rows[t] - lo)
  segs.sort()
  return Layout(
    strategy,
    n,
    rows,
    dim,
    max(max(load), 1),
    dim,
    seg_start=tuple(s for s, _, _ in segs),
    seg_shard=tuple(d for _, d, _ in segs),
    seg_local=tuple(loc for _, _, loc in segs),
  )


def _bucket(n: int, granule: int) -> int:
  return max(-(-n // granule) * granule, granule)


def route(
  layout: Layout, uniq: np.ndarray, inv: np.ndarray, granule: int = 0
) -> dict[str, np.ndarray]:
  """Host-side id exchange plan of one stack for the global batch.

  Args:
    layout: The stack's layout.
    uniq: The batch's sorted distinct virtual rows, padded with values >= rows.
    inv: [B, C] positions into ``uniq``; rows of device s are ``inv[s*B/n:(s+1)*B/n]``.
    granule: Size granule of the padded per-device counts (0: automatic), so few
      static shapes occur.

  Returns:
    ``own_uniq``: [n, Ko] each owner's distinct local rows (padding >= shard_rows),
    or the global ``uniq`` [U] (column_wise);
    ``own_inv``: [n, n*K] for each owner, the slot in ``own_uniq`` of what it
    sends to each requester (K per requester), or [n*K] (column_wise);
    ``inv``: [B, C] each id position's row in the requester's received
    [n*K] (row-based) or [K] (column_wise) buffer; position K-1 is always a
    zero row and marks padding ids.
  """
  n = layout.num_shards
  B = inv.shape[0]
  if B % n:
    raise ValueError(f"batch size {B} is not divisible by the {n} devices of the mesh")
  b = B // n
  granule = granule or max(8, -(-(b * inv.shape[1]) // 32))
  rows = layout.rows
  per_src = []  # (distinct positions into uniq, inverse, valid mask)
  for s in range(n):
    u, iv = np.unique(inv[s * b : (s + 1) * b], return_inverse=True)
    per_src.append((u, iv.reshape(b, -1), uniq[u] < rows))
  if not layout.row_based:
    K = _bucket(max(int(v.sum()) for _, _, v in per_src) + 1, granule)
    own_inv = np.full((n, K), len(uniq) - 1, np.int64)  # uniq always ends in padding
    new_inv = np.empty_like(inv)
    for s, (u, iv, valid) in enumerate(per_src):
      k = np.cumsum(valid) - 1
      own_inv[s, k[valid]] = u[valid]
      new_inv[s * b : (s + 1) * b] = np.where(valid, k, K - 1)[iv]
    return {
      "own_uniq": uniq.astype(np.int32),
      "own_inv": own_inv.reshape(-1).astype(np.int32),
      "inv": new_inv.astype(np.int32),
    }
  # Row-based: bucket each requester's rows by owner.
  src, dst, loc, pos = [], [], [], []
  for s, (u, _, valid) in enumerate(per_src):
    d, local_rows = layout.locate(uniq[u[valid]])
    src.append(np.full(len(d), s))
    dst.append(d)
    loc.append(local_rows)
    pos.append(np.flatnonzero(valid))
  src, dst, loc = np.concatenate(src), np.concatenate(dst), np.concatenate(loc)
  key = src * n + dst
  counts = np.bincount(key, minlength=n * n)
  K = _bucket(int(counts.max(initial=0)) + 1, granule)
  order = np.argsort(key, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(len(key), np.int64)
  rank[order] = np.arange(len(key)) - starts[key[order]]
  # Requester side: every distinct id's place in the received [n_owner * K] buffer.
  new_inv = np.empty_like(inv)
  off = 0
  for s, (u, iv, valid) in enumerate(per_src):
    m = int(valid.sum())
    where = np.full(len(u), K - 1, np.int64)  # padding ids read owner 0's zero slot K-1
    where[pos[s]] = dst[off : off + m] * K + rank[off : off + m]
    new_inv[s * b : (s + 1) * b] = where[iv]
    off += m
  # Owner side: distinct local rows over all requesters, and what to send to whom.
  own = [np.unique(loc[dst == d], return_inverse=True) for d in range(n)]
  Ko = _bucket(max(len(o[0]) for o in own) + 1, granule)
  own_uniq = np.empty((n, Ko), np.int64)
  own_inv = np.full((n, n * K), Ko - 1, np.int64)  # unused send slots read a padding row
  for d, (ul, il) in enumerate(own):
    own_uniq[d, : len(ul)] = ul
    own_uniq[d, len(ul) :] = layout.shard_rows + np.arange(Ko - len(ul))
    sel = dst == d
    own_inv[d, src[sel] * K + rank[sel]] = il
  return {
    "own_uniq": own_uniq.astype(np.int32),
    "own_inv": own_inv.astype(np.int32),
    "inv": new_inv.astype(np.int32),
  }


def local_capacity(layout_rows: int, ids_per_device: int) -> int:
  """Static slots per (requester, owner) pair of per-process input (`route_local`).

  A device's distinct ids that one owner serves are at most its id positions and at most the
  rows the owner holds; one more slot is the zero row that padding ids read. This worst case
  (every id on one owner) is the ceiling of `capacity_bucket`: a step's slots are sized by
  the largest count any device of any process asks of one owner, agreed between processes
  (`EmbeddingCollection.prepare_local`), so the all-to-alls carry the batch's ids, not n
  times them.
  """
  return -(-(min(ids_per_device, layout_rows) + 1) // 8) * 8


def owner_counts(layout: Layout, uniq: np.ndarray) -> np.ndarray:
  """[n] rows that one device's sorted distinct virtual rows ``uniq`` ask of each owner.

  Column-wise owners hold every row (a slice of its columns), so each is asked all of them.
  """
  valid = uniq[uniq < layout.rows]
  if not layout.row_based:
    return np.full(layout.num_shards, len(valid), np.int64)
  return np.bincount(layout.locate(valid)[0], minlength=layout.num_shards)


def capacity_bucket(need: int, ceiling: int) -> int:
  """Slots for ``need`` (padding slot included): the next power of two, at most ``ceiling``.

  Powers of two keep the step's shapes, hence its compilations, to a handful over a run.
  """
  return min(max(8, 1 << max(need - 1, 0).bit_length()), ceiling)


def route_local(
  layout: Layout, uniq: np.ndarray, inv: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
  """Requester-side plan of one device's ids for per-process input.

  Unlike `route`, which plans the whole global batch on every process, this sees only one
  requesting device's ids; the owners learn what to serve inside the step, when the
  requests travel to them by ``all_to_all`` (`MeshPlacement.gather_requests`), as
  TorchRec's input distribution sends ids before rows.

  Args:
    layout: The stack's layout.
    uniq: The device's sorted distinct virtual rows (values >= ``layout.rows``: padding).
    inv: [b, C] positions into ``uniq``.
    capacity: Slots per owner, `local_capacity`; slot ``capacity - 1`` (of owner 0) is never
      requested, so it reads the zero row that padding ids point at.

  Returns:
    ``req``: [n, capacity] the local rows asked of each owner (row-based), or [capacity]
    the distinct rows asked of every owner (``column_wise``); ``shard_rows`` marks unused
    slots. ``inv`` [b, C]: each id position's row in the received [n * capacity] buffer
    (row-based) or [capacity] rows, once their column slices are joined (``column_wise``).
  """
  n, K = layout.num_shards, capacity
  valid = uniq < layout.rows
  if not layout.row_based:  # uniq is sorted: its real rows come first
    m = int(valid.sum())
    if m > K - 1:
      raise ValueError(f"route_local: {m} distinct rows exceed capacity {K}")
    req = np.full(K, layout.shard_rows, np.int64)
    req[:m] = uniq[valid]
    where = np.full(len(uniq), K - 1, np.int64)
    where[valid] = np.arange(m)
    return req.astype(np.int32), where[inv].astype(np.int32)
  owner, local_rows = layout.locate(uniq[valid])
  counts = np.bincount(owner, minlength=n)
  if counts.max(initial=0) > K - 1:
    raise ValueError(f"route_local: {counts.max()} rows asked of one owner exceed capacity {K}")
  order = np.argsort(owner, kind="stable")
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(len(owner), np.int64)
  rank[order] = np.arange(len(owner)) - starts[owner[order]]
  req = np.full((n, K), layout.shard_rows, np.int64)
  req[owner, rank] = local_rows
  where = np.full(len(uniq), K - 1, np.int64)
  where[valid] = owner * K + rank
  return req.astype(np.int32), where[inv].astype(np.int32)


def dedup_sum(ids: jax.Array, grads: jax.Array, limit: int) -> tuple[jax.Array, jax.Array]:
  """Sorted distinct ``ids`` (padding: distinct values >= ``limit``) and their summed grads.

  Device-side (traced): per-process input sends a row's gradient from every device that
  asked for it, so the owner sums them before its sparse optimizer, which needs each row
  once. ``ids`` >= ``limit`` are padding; their gradients are dropped with them.
  """
  size = ids.shape[0]
  order = jnp.argsort(ids, stable=True)
  s = ids[order]
  new = jnp.concatenate([jnp.ones((1,), bool), s[1:] != s[:-1]])
  seg = jnp.cumsum(new.astype(jnp.int32)) - 1
  summed = jax.ops.segment_sum(grads[order], seg, num_segments=size, indices_are_sorted=True)
  uniq = jnp.zeros((size,), ids.dtype).at[seg].set(s)
  pos = jnp.arange(size, dtype=ids.dtype)
  real = (pos <= seg[-1]) & (uniq < limit)
  return jnp.where(real, uniq, limit + pos), summed


def take_rows_any(a: jax.Array, ids: jax.Array) -> jax.Array:
  """Rows ``a[ids]`` for unsorted ids with repeats; out-of-range ids read zeros."""
  return a.at[ids].get(mode="fill", fill_value=0)


def comm_bytes(layout: Layout, routed: Mapping[str, np.ndarray], itemsize: int = 4) -> int:
  """Bytes crossing devices per training step (forward rows + backward gradients)."""
  n = layout.num_shards
  if layout.row_based:
    K = routed["own_inv"].shape[1] // n
    per_pair = K * layout.dim
  else:
    K = routed["own_inv"].shape[0] // n
    per_pair = K * layout.shard_dim
  return 2 * n * (n - 1) * per_pair * itemsize


@dataclasses.dataclass(frozen=True)
class MeshPlacement:
  """The mesh and the axes that sharded stacks (and the batch) are split over."""

  mesh: jax.sharding.Mesh
  axes: tuple[str, ...]

  @property
  def size(self) -> int:
    return math.prod(self.mesh.shape[a] for a in self.axes)

  def spec(self, layout: Layout | None) -> P:
    """PartitionSpec of a stored array (None: replicated)."""
    if layout is None:
      return P()
    return P(self.axes, None) if layout.row_based else P(None, self.axes)

  def shard_map(self, fn, in_specs, out_specs):
    return jax.shard_map(
      fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
    )

  def gather(self, layout: Layout, arrays: Mapping[str, jax.Array], own_uniq, fn):
    """Each owner's distinct rows ``fn(local arrays, local own_uniq)``: [n, Ko|U, D] split on axis 0."""
    ax = self.axes
    names = sorted(arrays)
    id_spec = P(ax) if layout.row_based else P()

    def local(ids, *arrs):
      ids = ids[0] if layout.row_based else ids
      return fn(dict(zip(names, arrs)), ids)[None]

    specs = tuple(self.spec(layout) for _ in names)
    return self.shard_map(local, (id_spec,) + specs, P(ax))(own_uniq, *[arrays[k] for k in names])

  def exchange(self, layout: Layout, rows: jax.Array, own_inv, inv) -> jax.Array:
    """[B, C, dim] vectors of every id position, batch-split; differentiable in ``rows``."""
    ax, n = self.axes, self.size

    def local(r, oi, iv):
      r = r[0]
      if layout.row_based:
        send = r[oi[0]].reshape(n, -1, r.shape[-1])
        recv = jax.lax.all_to_all(send, ax, 0, 0, tiled=True)  # [n_owner, K, D]
        return recv.reshape(-1, r.shape[-1])[iv]
      send = r[oi].reshape(n, -1, r.shape[-1])
      recv = jax.lax.all_to_all(send, ax, 0, 2, tiled=True)  # [1, K, n * D/n]
      return recv[0][iv][..., : layout.dim]

    oi_spec = P(ax) if layout.row_based else P()
    return self.shard_map(local, (P(ax), oi_spec, P(ax)), P(ax))(rows, own_inv, inv)

  def update(self, layout: Layout, entry: Mapping[str, jax.Array], own_uniq, grads, fn):
    """Applies ``fn(local entry, local ids, local grads, shard index)`` on every owner."""
    ax = self.axes
    names = sorted(entry)
    id_spec = P(ax) if layout.row_based else P()

    def local(ids, g, *arrs):
      ids = ids[0] if layout.row_based else ids
      new = fn(dict(zip(names, arrs)), ids, g[0], jax.lax.axis_index(ax))
      return tuple(new[k] for k in names)

    specs = tuple(self.spec(layout) for _ in names)
    out = self.shard_map(local, (id_spec, P(ax)) + specs, specs)(
      own_uniq, grads, *[entry[k] for k in names]
    )
    return dict(zip(names, out))

  # -------------------------------------------- per-process input (route_local)
  def _receive_requests(self, layout: Layout, rq: jax.Array) -> jax.Array:
    """[n_requester * K] rows asked of this owner, from its local part ``rq`` of ``req``.

    Row-based: each requester's [n_owner, K] lists go to their owners by ``all_to_all``.
    Column-wise: every owner serves every requester's whole [K] list (its columns of
    those rows), so the lists are all-gathered: ints, K per device.
    """
    if layout.row_based:
      return jax.lax.all_to_all(rq[0], self.axes, 0, 0, tiled=True).reshape(-1)
    return jax.lax.all_gather(rq[0], self.axes, axis=0, tiled=True)

  def gather_requests(self, layout: Layout, arrays: Mapping[str, jax.Array], req, fn):
    """Each owner's rows for every request it receives: [n, n * K, D] split on axis 0.

    ``req`` [n, n, K] (requester, owner, slot), or [n, K] (requester, slot) for
    ``column_wise``, split with the batch, travels to the owners inside the step;
    ``fn(local arrays, local rows)`` reads the rows (repeats allowed). D is the stored
    width: ``shard_dim`` for ``column_wise``.
    """
    ax = self.axes
    names = sorted(arrays)

    def local(rq, *arrs):
      recv = self._receive_requests(layout, rq)  # requester-major
      return fn(dict(zip(names, arrs)), recv)[None]

    specs = tuple(self.spec(layout) for _ in names)
    return self.shard_map(local, (P(ax),) + specs, P(ax))(req, *[arrays[k] for k in names])

  def exchange_requests(self, layout: Layout, rows: jax.Array, inv) -> jax.Array:
    """[B, C, dim] vectors from `gather_requests`' rows; differentiable in ``rows``.

    Column-wise requesters receive every owner's column slice of their K rows and join
    them along the dimension (dropping its padding), as `exchange` does.
    """
    ax, n = self.axes, self.size

    def local(r, iv):
      send = r[0].reshape(n, -1, r.shape[-1])  # [n_requester, K, D]
      if not layout.row_based:
        recv = jax.lax.all_to_all(send, ax, 0, 2, tiled=True)  # [1, K, n_owner * D]
        return recv[0][:, : layout.dim][iv]
      recv = jax.lax.all_to_all(send, ax, 0, 0, tiled=True)  # [n_owner, K, D]
      return recv.reshape(-1, r.shape[-1])[iv]

    return self.shard_map(local, (P(ax), P(ax)), P(ax))(rows, inv)

  def update_requests(self, layout: Layout, entry: Mapping[str, jax.Array], req, grads, fn):
    """``fn(local entry, distinct local rows, summed grads, shard)`` on every owner.

    The owner receives the requests again (ints, cheap) and sums the gradients of rows that
    several devices asked for (`dedup_sum`); a column-wise owner updates its columns.
    """
    ax = self.axes
    names = sorted(entry)

    def local(rq, g, *arrs):
      recv = self._receive_requests(layout, rq)
      ids, summed = dedup_sum(recv, g[0], layout.shard_rows)
      new = fn(dict(zip(names, arrs)), ids, summed, jax.lax.axis_index(ax))
      return tuple(new[k] for k in names)

    specs = tuple(self.spec(layout) for _ in names)
    out = self.shard_map(local, (P(ax), P(ax)) + specs, specs)(
      req, grads, *[entry[k] for k in names]
    )
    return dict(zip(names, out))


def check_stack(layout: Layout, name: str, dtype: str, optimizer) -> None:
  """Column-wise limits: per-row statistics would need every column shard."""
  if layout.row_based:
    return
  if dtype.startswith("int"):
    raise ValueError(
      f"table stack {name!r}: column_wise needs a float dtype (per-row int scales span shards)"
    )
  if optimizer.name == "rowwise_adagrad" or optimizer.clip_norm > 0:
    raise ValueError(
      f"table stack {name!r}: column_wise does not support rowwise_adagrad or clip_norm "
      "(both need whole-row statistics); use row_wise or table_wise"
    )


def jnp_take_rows(a: jax.Array, ids: jax.Array) -> jax.Array:
  """Rows ``a[ids]``; out-of-range ids (padding) read zeros."""
  return a.at[ids].get(mode="fill", fill_value=0, unique_indices=True, indices_are_sorted=True)


def jnp_put_rows(a: jax.Array, ids: jax.Array, v: jax.Array) -> jax.Array:
  """``a[ids] = v``; out-of-range ids (padding) are dropped."""
  return a.at[ids].set(v.astype(a.dtype), mode="drop", unique_indices=True, indices_are_sorted=True)
