"""Table backends: where each embedding stack (table + optimizer slots) lives.

Every stack of an `EmbeddingCollection` has one backend:

- `Replicated`: the whole stack on every device (``data_parallel``);
- `Sharded`: split over the mesh by a `sharded.Layout` (``table_wise``, ``row_wise``,
  ``column_wise``, ``table_row_wise``);
- `Offloaded`: every row in a host (or memory-mapped disk) store and a device cache of
  the hot rows (``offload``, see `offload.py`).

`Tables` puts them behind one interface, so the trainer never asks where a table lives:

- host side: `prepare` (deduplicated ids, in the loader thread) and `pipeline` (what
  must happen between the loader and the step, e.g. the offload cache's planning);
- device side, inside the jitted step: `gather` / `assemble` (lookup), `apply_gradients`
  (sparse optimizer on the touched rows) and `eval_features`; outside it `before_step`
  and `before_eval`;
- checkpoints: `save_tree` (what is saved), `layouts_meta`, `restore` (re-laying rows
  out onto another mesh or strategy when the saved layout differs);
- export: `read_rows(emb, table, start, stop)`, whole rows of one table in a row range,
  so a table larger than RAM can be streamed out range by range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from jaxctr import parallel
from jaxctr.embeddings import offload as offload_lib
from jaxctr.embeddings import sharded
from jaxctr.embeddings.collection import EmbeddingCollection, Stack, init_stack

# Every placement a table can have: the sharding strategies and the host-offload cache.
PLACEMENTS = sharded.STRATEGIES + (offload_lib.GROUP,)


class DeviceBatch(NamedTuple):
  """One step's input: device arrays, device ids, the host batch and backend extras."""

  batch: dict[str, jax.Array]  # label, num, mask split over the batch axis
  ids: Any  # per-stack ids as the step reads them (see EmbeddingCollection.prepare)
  host: dict[str, np.ndarray]  # the host batch (labels and groups for metrics)
  extra: Any = None  # backend work to do right before the step (offload: the cache swap)


@dataclasses.dataclass(frozen=True)
class OffloadSettings:
  """The device caches of offloaded tables (``config.offload``)."""

  cache_fraction: float = 0.1
  cache_rows: int = 0
  policy: str = "lru"
  disk_dir: str = ""


class Backend:
  """Where one stack lives. Subclasses override what differs."""

  kind = ""

  def __init__(self, stack: Stack):
    self.stack = stack

  def init(self, key: jax.Array, put) -> dict[str, jax.Array]:
    """The stack's initial stored arrays; ``put(array, spec)`` places one on the mesh."""
    return {k: put(v, None) for k, v in init_stack(self.stack, key).items()}

  @property
  def layout(self) -> sharded.Layout | None:
    """The layout the stack is *saved* in (None: virtual rows, one per table row)."""
    return None

  def saved(self, entry) -> dict[str, Any]:
    """What a checkpoint stores for this stack."""
    return entry

  def template(self, entry) -> dict[str, Any]:
    """A restore template with `saved`'s structure."""
    return entry

  def load(self, saved, put) -> dict[str, jax.Array]:
    """The stored arrays from a checkpoint's virtual rows (``put`` as in `init`)."""
    return {k: put(np.asarray(v), self.spec) for k, v in saved.items()}

  @property
  def spec(self):
    return None

  def virtual(self, entry, start: int, stop: int) -> dict[str, np.ndarray]:
    """Virtual rows [start, stop) of every stored array of the stack."""
    return {k: np.asarray(v[start:stop]) for k, v in entry.items()}


class Replicated(Backend):
  kind = "data_parallel"


class Sharded(Backend):
  def __init__(self, stack: Stack, layout: sharded.Layout, placement: sharded.MeshPlacement):
    super().__init__(stack)
    self._layout, self.placement = layout, placement
    self.kind = layout.strategy

  @property
  def layout(self):
    return self._layout

  @property
  def spec(self):
    return self.placement.spec(self._layout)

  def init(self, key, put):
    return {
      k: put(self._layout.to_physical(np.asarray(v)), self.spec)
      for k, v in init_stack(self.stack, key).items()
    }

  def load(self, saved, put):
    return {k: put(self._layout.to_physical(np.asarray(v)), self.spec) for k, v in saved.items()}

  def virtual(self, entry, start, stop):
    lay = self._layout
    out = {}
    for k, v in entry.items():
      if lay.row_based:  # only the physical rows of [start, stop) leave the devices
        shard, local = lay.locate(np.arange(start, stop))
        out[k] = np.asarray(v[jax.numpy.asarray(shard * lay.shard_rows + local)])
      else:
        out[k] = lay.to_virtual(np.asarray(v[start:stop]))
    return out


class Offloaded(Backend):
  kind = offload_lib.GROUP

  def __init__(self, stack: Stack, manager: offload_lib.OffloadManager):
    super().__init__(stack)
    self.manager = manager

  def init(self, key, put):
    del key, put  # the host store was initialised with the same key
    return self.manager.empty_cache(self.stack.name)

  def saved(self, entry):
    # Callers flush first (`Tables.save_tree`); a copy, since training goes on meanwhile
    # (streamed to disk for a memory-mapped store: `HostStore.snapshot`).
    return self.manager.stacks[self.stack.name].store.snapshot()

  def template(self, entry):
    return {
      k: np.empty_like(v) for k, v in self.manager.stacks[self.stack.name].store.arrays.items()
    }

  def load(self, saved, put):
    del put
    return self.manager.load(self.stack.name, saved)

  def virtual(self, entry, start, stop):
    return {
      k: np.array(v[start:stop])
      for k, v in self.manager.stacks[self.stack.name].store.arrays.items()
    }


class Tables:
  """Every stack with its backend; the trainer's only door to the embedding tables.

  Build with `build`. Args are the collection (already sharded), the mesh, the
  backend of every stack, and the offload manager (None when nothing is offloaded).
  """

  def __init__(self, collection: EmbeddingCollection, mesh, backends, offload=None):
    self.collection = collection
    self.mesh = mesh
    self.backends: dict[str, Backend] = dict(backends)
    self.offload = offload
    self._offloaded = frozenset(n for n, b in self.backends.items() if b.kind == offload_lib.GROUP)

  # ------------------------------------------------------------------ state
  def init(self, key: jax.Array) -> dict[str, dict[str, jax.Array]]:
    """Initial stored arrays of every stack, placed on the mesh."""
    put = lambda x, spec: parallel.put_global(x, self.mesh, spec)
    return {name: b.init(key, put) for name, b in self.backends.items()}

  def num_bytes(self) -> int:
    """Bytes of every table and its optimizer slots (wherever they live)."""
    return self.collection.num_bytes()

  # ------------------------------------------------------------------- host
  def prepare(self, host_batch) -> Any:
    """A host batch's ids, deduplicated per stack and placed on the devices when they can be.

    Runs in the loader thread. Stacks whose ids depend on state the step changes (the
    offload cache's slots) stay on the host until `pipeline` maps them.
    """
    ids = self.collection.prepare(host_batch)
    return ids if self.offload is not None else self.collection.put_ids(ids, self.mesh)

  def local_input_refusal(self) -> str:
    """Why these tables cannot take per-process input (`prepare_local`); "" when they can."""
    if self.offload is not None:
      return "offloaded tables plan their device cache over the whole global batch"
    return self.collection.local_input_refusal()

  def prepare_local(self, host_batch, num_devices: int, rules, agree=None) -> Any:
    """Per-process input: ids of this process's rows, deduplicated per device and placed.

    See `EmbeddingCollection.prepare_local` (and its ``agree``); the arrays are assembled
    from every process's part along the batch axis (`parallel.put_local_batch`).
    """
    ids = self.collection.prepare_local(host_batch, num_devices, agree)
    return parallel.put_local_batch(ids, self.mesh, rules)

  def pipeline(self, items: Iterator[DeviceBatch], *, train: bool) -> Iterator[DeviceBatch]:
    """Stages between the loader (`prepare`d batches) and the step (offload: cache planning)."""
    if self.offload is None:
      return items
    return _Mapped(self.offload.pipeline(items, train=train), lambda x: DeviceBatch(*x))

  def before_step(self, emb, extra):
    """Host work due right before a step on the batch (offload: load its missing rows)."""
    return emb if extra is None else self.offload.swap(emb, extra)

  def before_eval(self, emb) -> None:
    """Makes slow storage current before evaluation reads it (offload: flush the cache)."""
    if self.offload is not None:
      self.offload.flush(emb)

  def metrics(self) -> dict[str, float]:
    """Backend statistics since the last call (offload: hit rates, rows and bytes per step)."""
    return self.offload.metrics() if self.offload is not None else {}

  # ----------------------------------------------------------------- device
  def gather(self, emb, ids):
    return self.collection.gather(emb, ids)

  def assemble(self, rows, ids):
    return self.collection.assemble(rows, ids)

  def apply_gradients(self, emb, ids, row_grads, step, lr_scale):
    return self.collection.apply_gradients(emb, ids, row_grads, step, lr_scale)

  def eval_features(self, emb, ids):
    """Per-feature vectors for evaluation (traced); reads but never changes ``emb``."""
    if self._offloaded:  # offloaded stacks: the batch's rows from the host store
      emb = self.offload.eval_view(emb, ids)
    rows = self.collection.gather(emb, ids, self._offloaded)
    return self.collection.assemble(rows, ids, self._offloaded)

  def check_l2(self, l2: float, mode: str) -> None:
    """Dense L2 updates every row of every table each step: only replicated tables can."""
    split = sorted(n for n, b in self.backends.items() if b.kind != "data_parallel")
    if l2 and mode == "dense" and split:
      raise ValueError(
        "config.embedding.l2_mode='dense' updates every row of every table each step; it needs "
        f"replicated tables, but {split} are sharded or offloaded "
        "(use l2_mode='sparse' or the data_parallel strategy)"
      )

  # ------------------------------------------------------------- checkpoint
  def layouts_meta(self) -> dict[str, str]:
    """The saved layout of every stack not saved in virtual rows (checkpoint metadata)."""
    return {n: b.layout.to_json() for n, b in self.backends.items() if b.layout is not None}

  def save_tree(self, emb):
    """What a checkpoint stores for ``emb`` (offloaded stacks: flushed whole host tables)."""
    self.before_eval(emb)
    return {n: b.saved(emb[n]) for n, b in self.backends.items()}

  def restore(self, ckpt, state, emb_field: str = "emb"):
    """Restores ``state`` (a pytree with the tables at ``emb_field``) from ``ckpt``.

    A checkpoint stores sharded tables in their physical layout and records it. When the
    saved layouts differ from this run's (other device count or strategy), every table is
    mapped to its virtual rows and placed anew, so 8 -> 4 -> 1 devices (or 1 -> 8)
    restore the same model. Returns (state, meta).
    """
    from jaxctr import checkpoint as ckpt_lib  # below train; only restores need it

    emb = getattr(state, emb_field)
    template = state.replace(
      **{emb_field: {n: b.template(emb[n]) for n, b in self.backends.items()}}
    )
    meta = ckpt.read_meta()
    saved_layouts = meta.get("layouts", {})
    put = lambda x, spec: parallel.put_global(x, self.mesh, spec)
    if saved_layouts == self.layouts_meta():
      restored, meta = ckpt.restore(template)
      saved = getattr(restored, emb_field)
      new = {
        n: b.load(saved[n], put) if b.kind == offload_lib.GROUP else saved[n]
        for n, b in self.backends.items()
      }
      return restored.replace(**{emb_field: new}), meta
    leaves = ckpt.restore_leaves()
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    out, saved_emb = [], {}
    for path, leaf in flat:
      key = jax.tree_util.keystr(path)
      if key not in leaves:
        raise ckpt_lib.CheckpointError(
          f"checkpoint {ckpt.directory} has no {key}: it is from another model/config"
        )
      value = leaves[key]
      if getattr(path[0], "name", None) == emb_field:
        stack, arr = path[1].key, path[2].key
        if stack in saved_layouts:
          value = sharded.Layout.from_json(saved_layouts[stack]).to_virtual(value)
        saved_emb.setdefault(stack, {})[arr] = value
        out.append(None)
        continue
      if value.shape != leaf.shape:
        raise ckpt_lib.CheckpointError(
          f"checkpoint {ckpt.directory}: {key} is {value.shape}, this run needs {leaf.shape}"
        )
      spec = getattr(getattr(leaf, "sharding", None), "spec", None)
      out.append(parallel.put_global(value.astype(leaf.dtype), self.mesh, spec))
    new_emb = {}
    for n, b in self.backends.items():
      want = b.template(emb[n])
      for k, v in saved_emb[n].items():
        need = self._virtual_shape(b, k, want[k])
        if v.shape != need:
          raise ckpt_lib.CheckpointError(
            f"checkpoint {ckpt.directory}: table stack {n!r} {k} is {v.shape}, this run "
            f"needs {need}"
          )
        saved_emb[n][k] = v.astype(want[k].dtype)
      new_emb[n] = b.load(saved_emb[n], put)
    restored = jax.tree_util.tree_unflatten(treedef, out)
    logging.info(
      "restored %s with a new table layout (%d -> %d devices)",
      ckpt.directory,
      next((sharded.Layout.from_json(v).num_shards for v in saved_layouts.values()), 1),
      self.mesh.size,
    )
    return restored.replace(**{emb_field: new_emb}), meta

  @staticmethod
  def _virtual_shape(b: Backend, key: str, stored) -> tuple[int, ...]:
    lay, width = b.layout, stored.shape[1]
    if lay is None:
      return tuple(stored.shape)
    if lay.row_based:
      return (lay.rows, width)
    return (
      lay.rows,
      lay.dim if width == lay.num_shards * lay.shard_dim else width // lay.num_shards,
    )

  # ----------------------------------------------------------------- export
  def read_rows(self, emb, table: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of logical table ``table`` as float32 [stop - start, dim].

    Reads only those rows from wherever the table lives (devices, host store, disk), so a
    table larger than RAM can be exported range by range. Low-precision rows are
    dequantized. Tables split by an embedding method (hashing, QR, ...) have no rows per
    id; read their physical sub-tables (``"<table>/<part>"``) instead.
    """
    from jaxctr.embeddings import quantization

    for s in self.collection.stacks:
      for t, off in zip(s.tables, s.offsets, strict=True):
        if t.name != table:
          continue
        if not 0 <= start <= stop <= t.vocab_size:
          raise ValueError(f"table {table!r}: rows [{start}, {stop}) outside [0, {t.vocab_size})")
        self.before_eval(emb)
        got = self.backends[s.name].virtual(emb[s.name], off + start, off + stop)
        rows = quantization.dequantize(got["table"], got.get("scale"))
        return np.asarray(rows, np.float32)
    names = sorted(t.name for s in self.collection.stacks for t in s.tables)
    raise ValueError(f"no table {table!r}; tables: {names}")


class _Mapped:
  """``map(fn, items)`` that forwards ``close`` to ``items`` (a prefetching generator)."""

  def __init__(self, items, fn):
    self._items, self._fn = items, fn

  def __iter__(self):
    return self

  def __next__(self):
    return self._fn(next(self._items))

  def close(self):
    close = getattr(self._items, "close", None)
    if close is not None:
      close()


def build(
  collection: EmbeddingCollection,
  mesh,
  axes: tuple[str, ...],
  *,
  row_placement: str = "range",
  group_size: int = 0,
  key: jax.Array,
  offload: OffloadSettings | None = None,
  depth: int = 2,
) -> Tables:
  """Lays the collection's stacks out by their placement tag and gives each its backend.

  Stacks tagged with a sharding strategy are split over ``axes`` of ``mesh``; stacks
  tagged "offload" get a host store (initialised from ``key``, the key `Tables.init`
  gets) and a device cache, split row-wise over the mesh when it has several devices.
  """
  placement = sharded.MeshPlacement(mesh, axes)
  offload = offload or OffloadSettings()
  cache_layouts = {}
  for s in collection.stacks:
    if s.group == offload_lib.GROUP and placement.size > 1:
      slots = offload_lib.cache_slots(s.rows, offload.cache_fraction, offload.cache_rows)
      cache_layouts[s.name] = sharded.make_layout("row_wise", [slots], s.dim, placement.size)
  collection.shard(
    placement, row_placement=row_placement, group_size=group_size, deferred=cache_layouts
  )
  manager = None
  if any(s.group == offload_lib.GROUP for s in collection.stacks):
    manager = offload_lib.OffloadManager(
      collection,
      mesh,
      key,
      cache_fraction=offload.cache_fraction,
      cache_rows=offload.cache_rows,
      policy=offload.policy,
      depth=depth,
      disk_dir=offload.disk_dir,
      layouts=cache_layouts,
    )
  backends: dict[str, Backend] = {}
  for s in collection.stacks:
    if s.group == offload_lib.GROUP:
      backends[s.name] = Offloaded(s, manager)
    elif s.name in collection.layouts:
      backends[s.name] = Sharded(s, collection.layouts[s.name], placement)
    else:
      backends[s.name] = Replicated(s)
  return Tables(collection, mesh, backends, manager)
