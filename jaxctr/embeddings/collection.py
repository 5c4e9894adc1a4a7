"""A collection of embedding tables with host-side dedup and sparse updates.

Physical layout: tables with the same (dim, dtype, optimizer) are *stacked*
into one array with per-table row offsets (as TorchRec's fused tables and
jax-tpu-embedding's table stacking do), so a batch needs one gather and one
scatter per stack instead of one per table.

A step has three parts:

1. `prepare` (host, numpy, runs in the loader thread): the batch's ids of every
   stack are deduplicated. It returns, per stack, the sorted unique rows
   ``uniq`` padded to a bucketed static size with distinct out-of-range values,
   and ``inv`` [B, C] mapping every id position to its slot in ``uniq``.
2. `gather` + `assemble` (device, inside jit): rows = table[uniq] (padding reads
   zeros), then per-feature vectors rows[inv], pooled for sequences.
   Differentiating through ``rows[inv]`` yields the per-row *summed* gradient.
3. `apply_gradients` (device, inside jit, table donated): the sparse optimizer
   updates only the touched rows and scatters them back.

Tables may use another embedding method than one row per id (`encoders`):
the *logical* features and tables are expanded into physical sub-features and
sub-tables, ids are transformed in `prepare` and vectors combined in
`assemble`. Low-precision tables (`quantization`) are dequantized on gather
and written back with stochastic rounding.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxctr import hostmem
from jaxctr.embeddings import encoders, optimizers, quantization, sharded
from jaxctr.embeddings.specs import (
  CATEGORICAL,
  NUMERIC,
  SEQUENCE,
  FeatureSpec,
  OptimizerSpec,
  SpecError,
  TableSpec,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Column:
  """Where one feature's ids sit in a stack's ``inv`` matrix."""

  feature: FeatureSpec
  start: int  # first column in inv
  offset: int  # row offset of the feature's table inside the stack


@dataclasses.dataclass(frozen=True)
class Stack:
  """Tables stored together in one [rows, dim] array."""

  name: str
  dim: int
  dtype: str
  optimizer: OptimizerSpec
  tables: tuple[TableSpec, ...]
  offsets: tuple[int, ...]
  columns: tuple[Column, ...]
  group: str = ""  # placement tag (sharding strategy, offload); stacks never mix tags

  @property
  def rows(self) -> int:
    return self.offsets[-1] + self.tables[-1].vocab_size

  @property
  def width(self) -> int:
    """Number of id positions per example across all features of the stack."""
    return sum(c.feature.width for c in self.columns)


def table_key(key: Array, name: str) -> Array:
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


@functools.partial(jax.jit, static_argnums=(2, 3), donate_argnums=(0,))
def _fill_rows(buf: Array, key: Array, rows: int, dim: int, offset, mean, std) -> Array:
  """Writes N(mean, std^2) rows into ``buf`` at ``offset`` in place (``buf`` donated)."""
  part = mean + std * jax.random.normal(key, (rows, dim), jnp.float32)
  return jax.lax.dynamic_update_slice(buf, part.astype(buf.dtype), (offset, 0))


def init_stack(s: Stack, key: Array) -> dict[str, Array]:
  """A stack's stored arrays and optimizer slots.

  Float tables are filled table by table into one donated buffer, so the peak is
  the stack plus one table (concatenating per-table parts would hold every part
  and the result at once: 2x a 26 x 1M x 17 stack). Integer tables are quantized
  from an fp32 stack.
  """
  float_store = not quantization.is_int(s.dtype)
  buf = jnp.zeros((s.rows, s.dim), s.dtype if float_store else jnp.float32)
  hostmem.huge_zeros(buf)  # the fill below faults huge pages in (CPU, when enabled)
  for t, off in zip(s.tables, s.offsets, strict=True):
    buf = _fill_rows(buf, table_key(key, t.name), t.vocab_size, s.dim, off, t.init_mean, t.init_std)
  entry = {"table": buf} if float_store else quantization.store(buf, s.dtype, None)
  for slot in optimizers.get(s.optimizer).slots:
    width = 1 if slot.per_row else s.dim
    value = slot.init(s.optimizer)
    entry[slot.name] = jnp.full((s.rows, width), value, jnp.float32)
    if value == 0:  # zeros read back from the huge pages touched by the first updates
      hostmem.huge_zeros(entry[slot.name])
  return entry


def unique_inverse(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``np.unique(ids, return_inverse=True)`` for non-negative ids; inverse as int32.

  One plain sort of ``id << bits | position`` keys replaces the stable argsort
  that `np.unique` needs for the inverse, at a fraction of its CPU time in the
  loader thread (which a small host takes from the training step). Falls back
  to `np.unique` when the packed key would not fit in 63 bits.
  """
  flat = np.asarray(ids).ravel()
  n = flat.size
  bits = max(1, (n - 1).bit_length())
  if n == 0 or int(flat.max()) >= 1 << (63 - bits) or int(flat.min()) < 0:
    uniq, inv = np.unique(flat, return_inverse=True)
    return uniq, inv.reshape(np.shape(ids)).astype(np.int32)
  key = (flat.astype(np.int64) << bits) | np.arange(n, dtype=np.int64)
  key.sort()
  vals = key >> bits
  new = np.empty(n, bool)
  new[0] = True
  np.not_equal(vals[1:], vals[:-1], out=new[1:])
  inv = np.empty(n, np.int32)
  inv[key & ((1 << bits) - 1)] = np.cumsum(new, dtype=np.int32) - 1
  return vals[new], inv.reshape(np.shape(ids))


def bucket_size(n: int, total: int, granule: int = 0) -> int:
  """Rounds ``n`` up to a multiple of a granule so few static shapes occur."""
  granule = granule or max(128, -(-total // 16))
  granule = -(-granule // 8) * 8
  return min(-(-n // granule) * granule, -(-(total + 1) // 8) * 8)


class EmbeddingCollection:
  """Tables, their stacked layout, and the per-step lookup/update functions.

  Args:
    features: The dataset's features in column order. Categorical features
      read ``batch["cat"][:, i]`` (i counts categorical features only);
      sequence features read ``batch[name]`` (ids padded with -1).
    tables: One `TableSpec` per table referenced by a feature.
    stack_tables: Stack tables with equal (dim, dtype, optimizer).
    granule: Bucket granule for the padded unique-id count (0: automatic).
    seed: Seed of the stochastic rounding of low-precision tables.
    groups: Placement tag per *logical* table name (e.g. its sharding strategy
      or "offload"); tables with different tags are never stacked together.
      Physical sub-tables of an encoder (``"<table>/<part>"``) inherit their
      table's tag.
  """

  def __init__(
    self,
    features: Sequence[FeatureSpec],
    tables: Sequence[TableSpec],
    *,
    stack_tables: bool = True,
    granule: int = 0,
    seed: int = 0,
    groups: Mapping[str, str] | None = None,
  ):
    self.logical_features = tuple(f for f in features if f.kind != NUMERIC)
    self.features = self.logical_features
    self.tables = {t.name: t for t in tables}
    if len(self.tables) != len(tables):
      raise SpecError("duplicate table names in " + str([t.name for t in tables]))
    self.granule = granule
    self.seed = seed
    self.groups = dict(groups or {})
    cat_index, i = {}, 0
    for f in features:
      if f.kind == CATEGORICAL:
        cat_index[f.name] = i
        i += 1
    self._cat_index = cat_index
    for f in self.features:
      t = self.tables.get(f.table_name)
      if t is None:
        raise SpecError(f"feature {f.name!r} names table {f.table_name!r}, which is not declared")
      if f.vocab_size > t.vocab_size:
        raise SpecError(
          f"feature {f.name!r} has vocab_size {f.vocab_size} but its table {t.name!r} has only "
          f"{t.vocab_size} rows"
        )
      if t.encoder.method == "dhe" and f.kind != CATEGORICAL:
        raise SpecError(f"feature {f.name!r}: method 'dhe' supports categorical features only")
    for t in tables:
      optimizers.get(t.optimizer, where=f"table {t.name!r}")
    self.logical_tables = self.tables
    self.plans, phys_features, phys_tables = encoders.expand(self.logical_features, self.tables)
    self.features = phys_features
    self.tables = {t.name: t for t in phys_tables}
    self.dhe = tuple(p for p in self.plans if p.method == "dhe")
    self.stacks = self._build_stacks(stack_tables)
    self.placement: sharded.MeshPlacement | None = None
    self.layouts: dict[str, sharded.Layout] = {}
    # Sharded stacks whose ids someone else routes after `prepare` (the offload cache maps
    # rows to cache slots first, then routes the slots).
    self.deferred_routing: frozenset[str] = frozenset()

  def shard(
    self,
    placement: sharded.MeshPlacement,
    *,
    row_placement: str = "range",
    group_size: int = 0,
    deferred: Mapping[str, sharded.Layout] | None = None,
  ) -> None:
    """Lays out every stack whose tag is a sharded strategy over ``placement``'s devices.

    ``deferred`` gives stacks stored in another layout than their rows (an offload
    cache's slots): their arrays are split by that layout, and their ids are routed by
    whoever maps rows to slots, after `prepare`.
    """
    self.placement = placement
    self.layouts = dict(deferred or {})
    self.deferred_routing = frozenset(self.layouts)
    for s in self.stacks:
      if s.group in sharded.STRATEGIES and s.group != "data_parallel":
        layout = sharded.make_layout(
          s.group,
          [t.vocab_size for t in s.tables],
          s.dim,
          placement.size,
          placement=row_placement,
          group_size=group_size,
        )
        sharded.check_stack(layout, s.name, s.dtype, s.optimizer)
        self.layouts[s.name] = layout

  def shard_state(self, state, put):
    """Virtual state (from `init`) -> stored state: sharded stacks in their physical layout.

    ``put(array, partition_spec)`` makes the global array (see `parallel.put_global`).
    """
    out = {}
    for name, entry in state.items():
      layout = self.layouts.get(name)
      spec = self.placement.spec(layout) if self.placement else None
      out[name] = {
        k: put(layout.to_physical(np.asarray(v)) if layout else v, spec) for k, v in entry.items()
      }
    return out

  def unshard_state(self, state) -> dict[str, dict[str, np.ndarray]]:
    """Stored state -> host copies in the virtual layout (every row once, in table order)."""
    out = {}
    for name, entry in state.items():
      layout = self.layouts.get(name)
      out[name] = {
        k: layout.to_virtual(np.asarray(v)) if layout else np.asarray(v) for k, v in entry.items()
      }
    return out

  def put_ids(self, ids, mesh):
    """`prepare`'s host arrays -> global device arrays, each placed where the step reads it.

    Sharded stacks: ``own_uniq``/``own_inv`` [n, ...] one row per device, ``inv``
    split with the batch. Everything else (replicated stacks, DHE ids) is replicated.
    """
    from jaxctr import parallel  # local import: parallel imports nothing from here

    axes = self.placement.axes if self.placement else None

    def put(path, x):
      stack = jax.tree_util.keystr(path[:1])[2:-2]
      last = jax.tree_util.keystr(path[-1:])
      routed = last == "['inv']" or (last in ("['own_uniq']", "['own_inv']") and x.ndim == 2)
      if stack in self.layouts and routed:
        return parallel.put_global(x, mesh, jax.sharding.PartitionSpec(axes))
      return parallel.put_global(x, mesh)

    return jax.tree_util.tree_map_with_path(put, ids)

  def bytes_per_device(self) -> list[int]:
    """Stored table + optimizer-slot bytes on each device of the placement."""
    n = self.placement.size if self.placement else 1
    per = np.zeros(n, np.int64)
    for s in self.stacks:
      layout = self.layouts.get(s.name)
      dim = s.dim if layout is None or layout.row_based else layout.shard_dim
      row = optimizers.row_bytes(s.optimizer, s.dtype, dim)
      per += (s.rows if layout is None or not layout.row_based else layout.shard_rows) * row
    return per.tolist()

  def _build_stacks(self, stack_tables: bool) -> tuple[Stack, ...]:
    used = [t for t in self.tables.values() if any(f.table_name == t.name for f in self.features)]
    groups: dict[tuple, list[TableSpec]] = {}
    for t in used:
      tag = self.group_of(t.name)
      key = (tag, t.dim, t.dtype, t.optimizer) if stack_tables else (tag, t.name)
      groups.setdefault(key, []).append(t)
    stacks = []
    for gi, (key, group) in enumerate(groups.items()):
      offsets, off = [], 0
      for t in group:
        offsets.append(off)
        off += t.vocab_size
      by_table = {t.name: o for t, o in zip(group, offsets)}
      cols, start = [], 0
      for f in self.features:
        if f.table_name in by_table:
          cols.append(Column(f, start, by_table[f.table_name]))
          start += f.width
      name = group[0].name if len(group) == 1 else f"stack{gi}_d{group[0].dim}"
      t0 = group[0]
      stacks.append(
        Stack(
          name, t0.dim, t0.dtype, t0.optimizer, tuple(group), tuple(offsets), tuple(cols), key[0]
        )
      )
    return tuple(stacks)

  def group_of(self, table: str) -> str:
    """The placement tag of a (logical or physical) table; "" if none."""
    return self.groups.get(table, self.groups.get(table.split("/")[0], ""))

  # ------------------------------------------------------------------ state
  def init(self, key: Array) -> dict[str, dict[str, Array]]:
    """Initial tables and optimizer slots, {stack: {"table": ..., slot: ...}}.

    Each table's rows come from a key derived from the table's *name*, so the
    values do not depend on how tables are stacked or sharded. Generation is
    jitted so XLA writes the random rows straight into the stacked buffer
    (no per-table copies: a 26 x 1M x 17 stack would otherwise peak at 2x).
    """
    state = {}
    for s in self.stacks:
      state[s.name] = init_stack(s, key)
    return state

  def num_bytes(self) -> int:
    """Bytes of tables plus optimizer slots."""
    return sum(s.rows * optimizers.row_bytes(s.optimizer, s.dtype, s.dim) for s in self.stacks)

  # ------------------------------------------------------------------- host
  def prepare(self, batch: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Deduplicates a host batch's ids per stack (numpy; run off the hot path)."""
    flats, out = self._stack_ids(batch)
    for s in self.stacks:
      flat = flats[s.name]
      uniq, inv = unique_inverse(flat)
      n = len(uniq)
      if n and uniq[-1] == s.rows:  # the sentinel is already a distinct value
        n -= 1
      size = bucket_size(n + 1, flat.size, self.granule)
      padded = np.empty(size, np.int64)
      padded[:n] = uniq[:n]
      padded[n:] = s.rows + np.arange(size - n)  # distinct, sorted, out of range
      idt = np.int32 if s.rows + size < 2**31 else np.int64
      inv = inv.reshape(flat.shape)
      layout = self.layouts.get(s.name)
      if layout is not None and s.name not in self.deferred_routing:  # see sharded.route
        out[s.name] = sharded.route(layout, padded, inv)
      else:
        out[s.name] = {"uniq": padded.astype(idt), "inv": inv}
    return out

  def local_input_refusal(self) -> str:
    """Why `prepare_local` cannot serve these stacks ("" when it can)."""
    for s in self.stacks:
      if s.name in self.deferred_routing:
        return f"table stack {s.name!r} has its ids routed after prepare (offload cache, partials)"
    return ""

  def prepare_local(
    self,
    batch: Mapping[str, np.ndarray],
    num_devices: int,
    agree: Callable[[dict[str, int]], dict[str, int]] | None = None,
  ) -> dict[str, dict[str, np.ndarray]]:
    """Per-process input: ids of this process's rows, deduplicated per device (numpy).

    ``batch`` holds only this process's contiguous rows of the global batch, split evenly
    over its ``num_devices`` devices in mesh order. Every array is laid out along the batch
    axis (leading axis: this process's devices), so the global arrays are assembled with
    `jax.make_array_from_process_local_data`. What each device needs from the others
    travels inside the step:

    - replicated stacks: ``dev_uniq`` [devices, U] each device's distinct rows,
      ``inv`` [b * devices, C]; the update gathers every device's rows and gradients
      (XLA collectives) and sums them per row;
    - row-based sharded stacks: ``req`` [devices, n, K] the local rows each device asks
      of each owner (`sharded.route_local`), ``inv`` into the received rows; requests and
      rows move by ``all_to_all`` (`sharded.MeshPlacement.gather_requests`);
    - ``column_wise`` stacks: ``req`` [devices, K] each device's distinct rows, asked of
      every owner (each holds a slice of every row's columns), ``inv`` into them.

    U and K are sized by this batch's ids (`sharded.capacity_bucket`: the largest count of
    any device, a power of two, at most the worst case `sharded.local_capacity`). Shapes
    must be equal in every process, so ``agree`` (multi-process runs) turns this process's
    sizes into the maximum over all processes.

    Args:
      batch: This process's rows.
      num_devices: This process's devices.
      agree: {stack: size} -> the element-wise maximum over processes (None: one process).

    Raises:
      ValueError: for stacks this cannot serve (`local_input_refusal`) or a batch that the
        devices do not split evenly.
    """
    why = self.local_input_refusal()
    if why:
      raise ValueError(f"per-process input: {why}")
    rows = len(next(iter(batch.values())))
    if rows % num_devices:
      raise ValueError(
        f"per-process input: {rows} rows of this process do not split over {num_devices} devices"
      )
    b = rows // num_devices
    flats, out = self._stack_ids(batch)
    per_stack, caps = {}, {}
    for s in self.stacks:
      flat, layout = flats[s.name], self.layouts.get(s.name)
      width = flat.shape[1]
      ceiling = sharded.local_capacity(s.rows if layout is None else layout.shard_rows, b * width)
      if s.rows + ceiling >= 2**31:
        raise ValueError(f"per-process input: table stack {s.name!r} is too large for int32 ids")
      devs = [unique_inverse(flat[d * b : (d + 1) * b]) for d in range(num_devices)]
      if layout is None:
        need = max(len(u) for u, _ in devs) + 1
      else:
        need = max(int(sharded.owner_counts(layout, u).max(initial=0)) for u, _ in devs) + 1
      per_stack[s.name] = devs
      caps[s.name] = sharded.capacity_bucket(need, ceiling)
    if agree is not None:
      caps = agree(caps)
    for s in self.stacks:
      layout, cap = self.layouts.get(s.name), caps[s.name]
      uniqs, invs = [], []
      for uniq, inv in per_stack[s.name]:
        if layout is None:
          padded = np.empty(cap, np.int64)
          n = len(uniq)
          padded[:n] = uniq
          padded[n:] = s.rows + np.arange(cap - n)  # out of range: read zeros, dropped
          uniqs.append(padded.astype(np.int32))
          invs.append(inv.astype(np.int32))
        else:
          req, iv = sharded.route_local(layout, uniq, inv, cap)
          uniqs.append(req)
          invs.append(iv)
      key = "dev_uniq" if layout is None else "req"
      out[s.name] = {key: np.stack(uniqs), "inv": np.concatenate(invs)}
    return out

  def _stack_ids(self, batch) -> tuple[dict[str, np.ndarray], dict]:
    """Per stack, the batch's virtual rows [B, C] (sequence padding: ``rows``); DHE ids."""
    cols, out = {}, {}
    for p in self.plans:
      f = p.feature
      if p.method == "full":
        continue
      ids = (
        batch["cat"][:, self._cat_index[f.name], None] if f.kind == CATEGORICAL else batch[f.name]
      )
      if p.method == "dhe":
        out.setdefault(encoders.DHE_IDS, {})[f.name] = np.asarray(ids[:, 0], np.int32)
      else:
        cols.update(encoders.transform(p, ids))
    flats = {}
    for s in self.stacks:
      blocks = []
      for c in s.columns:
        f = c.feature
        if f.name in cols:
          ids = cols[f.name]
        elif f.kind == CATEGORICAL:
          ids = batch["cat"][:, self._cat_index[f.name], None]
        else:
          ids = batch[f.name]
        ids = np.asarray(ids, dtype=np.int64)
        # Ids outside [0, vocab) would silently read another table's rows.
        if f.kind == SEQUENCE:
          valid = ids >= 0
          bad = valid & (ids >= f.vocab_size)
          ids = np.where(valid, ids + c.offset, s.rows)  # padding -> sentinel row
        else:
          bad = (ids < 0) | (ids >= f.vocab_size)
          ids = ids + c.offset
        if bad.any():
          raise ValueError(
            f"feature {f.name!r}: id {int(ids[bad][0] - c.offset)} outside [0, {f.vocab_size})"
          )
        blocks.append(ids)
      flats[s.name] = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
    return flats, out

  # ----------------------------------------------------------------- device
  def gather(self, state, ids, replicated: frozenset[str] = frozenset()) -> dict[str, Array]:
    """Rows of every stack's unique ids; out-of-range padding reads zeros.

    ``replicated`` names sharded stacks that this call reads as plain replicated
    tables (e.g. evaluation's per-batch mini-tables of offloaded stacks).
    """
    rows = {}
    for s in self.stacks:
      layout = None if s.name in replicated else self.layouts.get(s.name)
      if "req" in ids[s.name] or "dev_uniq" in ids[s.name]:  # per-process input
        rows[s.name] = self._gather_local(s, state[s.name], ids[s.name], layout)
        continue
      if layout is not None:  # owners gather their distinct rows: [n, Ko, D]
        arrays = {k: v for k, v in state[s.name].items() if k in ("table", "scale")}
        rows[s.name] = self.placement.gather(
          layout,
          arrays,
          ids[s.name]["own_uniq"],
          lambda a, u: quantization.dequantize(
            sharded.jnp_take_rows(a["table"], u),
            sharded.jnp_take_rows(a["scale"], u) if "scale" in a else None,
          ),
        )
        continue
      entry, uniq = state[s.name], ids[s.name]["uniq"]
      get = lambda a: a.at[uniq].get(
        mode="fill", fill_value=0, indices_are_sorted=True, unique_indices=True
      )
      rows[s.name] = quantization.dequantize(
        get(entry["table"]), get(entry["scale"]) if "scale" in entry else None
      )
    return rows

  def _gather_local(self, s: Stack, entry, ids, layout) -> Array:
    """Rows of per-process input (`prepare_local`): [n, U, D] or the owners' [n, n*K, D].

    Column-wise owners return their ``shard_dim`` columns of the requested rows.
    """
    read = lambda a, u: quantization.dequantize(
      sharded.take_rows_any(a["table"], u),
      sharded.take_rows_any(a["scale"], u) if "scale" in a else None,
    )
    if "req" in ids:
      arrays = {k: v for k, v in entry.items() if k in ("table", "scale")}
      return self.placement.gather_requests(layout, arrays, ids["req"], read)
    return read(entry, ids["dev_uniq"])

  def assemble(
    self, rows: Mapping[str, Array], ids, replicated: frozenset[str] = frozenset()
  ) -> dict[str, Array]:
    """Per-feature vectors: [B, D] (pooled) or [B, L, D] for pooling='none'.

    Sequence features with pooling='none' also get ``"<name>/mask"`` [B, L].
    DHE features get their raw ids as ``"<name>/dhe_ids"`` [B] instead of a
    vector; `FeatureEncoder` computes the vector.
    """
    out = {}
    for s in self.stacks:
      inv = ids[s.name]["inv"]
      layout = None if s.name in replicated else self.layouts.get(s.name)
      if "req" in ids[s.name]:  # per-process input: rows answer each device's requests
        x = self.placement.exchange_requests(layout, rows[s.name], inv)
        pad = ids[s.name]["req"].shape[-1] - 1  # (owner 0's) last slot: the zero row
        is_real = lambda iv, pad=pad: iv != pad
      elif "dev_uniq" in ids[s.name]:  # per-process input, replicated: each device's rows
        n, u = ids[s.name]["dev_uniq"].shape
        iv3 = inv.reshape(n, -1, inv.shape[-1])
        x = jax.vmap(lambda r, i: r[i])(rows[s.name], iv3).reshape(inv.shape + (-1,))
        uniq = ids[s.name]["dev_uniq"]
        is_real = lambda iv, s=s, u=uniq, n=n: (
          jax.vmap(lambda a, i: a[i])(u, iv.reshape(n, -1, iv.shape[-1])).reshape(iv.shape) < s.rows
        )
      elif layout is not None:  # rows travel from their owners to the requesting devices
        own_inv = ids[s.name]["own_inv"]
        x = self.placement.exchange(layout, rows[s.name], own_inv, inv)
        pad = own_inv.shape[-1] // layout.num_shards - 1  # slot K-1: the zero row
        is_real = lambda iv, pad=pad: iv != pad
      else:
        x = rows[s.name][inv]  # [B, C, D]
        is_real = lambda iv, s=s, u=ids[s.name]["uniq"]: u[iv] < s.rows
      for c in s.columns:
        f = c.feature
        if f.kind == CATEGORICAL:
          out[f.name] = x[:, c.start]
          continue
        v = x[:, c.start : c.start + f.width]
        mask = is_real(inv[:, c.start : c.start + f.width]).astype(v.dtype)
        if f.pooling == "none":
          out[f.name], out[f.name + "/mask"] = v, mask
        else:
          out[f.name] = encoders.pool(v, mask, f.pooling)
    phys, out = out, {}
    for p in self.plans:
      name = p.feature.name
      if p.method == "full":
        out[name] = phys[name]
        if name + "/mask" in phys:
          out[name + "/mask"] = phys[name + "/mask"]
      elif p.method == "dhe":
        out[name + "/dhe_ids"] = ids[encoders.DHE_IDS][name]
      else:
        res = encoders.combine(p, phys, {n: phys[n + "/mask"] for n in p.subs})
        if isinstance(res, tuple):
          out[name], out[name + "/mask"] = res
        else:
          out[name] = res
    return out

  def apply_gradients(
    self, state, ids, row_grads: Mapping[str, Array], step: Array, lr_scale: Array | float = 1.0
  ):
    """Sparse optimizer update of the touched rows; returns the new state.

    Low-precision rows are written back with stochastic rounding keyed by
    (seed, step, stack), so runs are reproducible and resumable.
    """
    new_state = {}
    step_key = jax.random.fold_in(jax.random.key(self.seed), step)
    for s in self.stacks:
      # The schedule's factor rides on the (otherwise static) spec as a traced value.
      spec = dataclasses.replace(s.optimizer, learning_rate=s.optimizer.learning_rate * lr_scale)
      key = table_key(step_key, s.name) if s.dtype != "float32" else None
      layout = self.layouts.get(s.name)
      if "dev_uniq" in ids[s.name]:  # per-process input: every device's rows, summed per row
        g = row_grads[s.name]
        flat, g = ids[s.name]["dev_uniq"].reshape(-1), g.reshape(-1, g.shape[-1])
        if self.placement is not None:  # the replicas all apply the same update
          rep = jax.sharding.NamedSharding(self.placement.mesh, jax.sharding.PartitionSpec())
          flat, g = jax.lax.with_sharding_constraint((flat, g), rep)
        uniq, g = sharded.dedup_sum(flat, g, s.rows)
        new_state[s.name] = _update_rows(s, spec, state[s.name], uniq, g, step, key)
        continue
      if "req" in ids[s.name]:

        def local_req(entry, uniq, g, shard, s=s, spec=spec, key=key):
          k = None if key is None else jax.random.fold_in(key, shard)
          return _update_rows(s, spec, entry, uniq, g, step, k)

        new_state[s.name] = self.placement.update_requests(
          layout, state[s.name], ids[s.name]["req"], row_grads[s.name], local_req
        )
        continue
      if layout is None:
        new_state[s.name] = _update_rows(
          s, spec, state[s.name], ids[s.name]["uniq"], row_grads[s.name], step, key
        )
        continue

      def local(entry, uniq, g, shard, s=s, spec=spec, key=key):
        k = None if key is None else jax.random.fold_in(key, shard)
        return _update_rows(s, spec, entry, uniq, g, step, k)

      new_state[s.name] = self.placement.update(
        layout, state[s.name], ids[s.name]["own_uniq"], row_grads[s.name], local
      )
    return new_state


def _update_rows(s: Stack, spec: OptimizerSpec, entry, uniq, g, step, key):
  """Sparse optimizer step of the rows ``uniq`` of one stored entry (table + slots)."""
  opt = optimizers.get(s.optimizer)
  scale = sharded.jnp_take_rows(entry["scale"], uniq) if "scale" in entry else None
  w = quantization.dequantize(sharded.jnp_take_rows(entry["table"], uniq), scale)
  slots = {
    k: sharded.jnp_take_rows(v, uniq) for k, v in entry.items() if k not in ("table", "scale")
  }
  new_w, new_slots = opt.update(w, slots, g, step, spec)
  new_entry = {
    k: sharded.jnp_put_rows(entry[k], uniq, v)
    for k, v in quantization.store(new_w, s.dtype, key).items()
  }
  for k, v in new_slots.items():
    new_entry[k] = sharded.jnp_put_rows(entry[k], uniq, v)
  return new_entry
