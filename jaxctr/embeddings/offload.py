"""Host-offload embedding cache: every row in host memory, the hot rows on the device.

Tables placed "offload" (by the planner or a pin; `EmbeddingCollection(groups=...)`)
form their own stacks. For each such stack:

* a **host store** keeps every row of the table and of its optimizer slots in
  numpy arrays (or `np.memmap` files under ``disk_dir`` for tables larger than
  RAM), initialised chunk by chunk with the same counter-based random bits
  `EmbeddingCollection.init` draws, so values are bit-identical to an
  on-device table without ever materialising the whole table on the device;
* a **device cache** of S slots ``{"table": [S, dim], <slot>: [S, w]}``
  *replaces* the stack in the training state (`backends.Offloaded`), so the unchanged jitted train
  step runs on slot ids instead of row ids;
* a `CachePlanner` (``cache_policy.py``) maps rows to slots (LRU or LFU, rows
  of in-flight batches pinned, dirty tracking).

The pipeline has three overlapped stages: (1) the loader thread reads and
deduplicates a batch (`EmbeddingCollection.prepare`); (2) the planner thread
(`OffloadManager.pipeline`) plans the cache for it, rewrites its ids into
slot space (sorted slot ids; padding keeps its values >= rows, which are out
of range of the cache too, so masks and dropped writes work unchanged),
gathers the missing rows (with their optimizer state) from the host store
and transfers them; (3) the main thread runs `swap` (a read of the victims'
old rows, then a jitted, donated in-place scatter of the new rows) and then
the train step. Evicted rows are copied back to the host store by a write-back
thread; the planner waits for a row's pending write-back before reading it
again, and device order (the donation chain) guarantees an evicted value
includes every earlier step's update. So no batch runs on stale or missing
rows; an exception in any worker stops training with that error. The planner
looks ``depth + 2`` batches ahead and does not evict their rows (if the cache
can afford it), so that wait, which drains the pipeline, is rare.

Host cost per step is measured by `benchmarks/offload.py` (figures in
``experiments/README.md``).

Sparse optimizers are elementwise per row and ``rows[inv]`` is the same for
row and slot ids, so float tables train bit-identically to on-device tables.
(Low-precision tables draw their stochastic-rounding bits by position in the
batch's unique ids, which differs between row and slot order: equal in
distribution, not bit-identical.)

Checkpoints hold the whole tables: the `backends.Offloaded` backend flushes the
cache (`flush` writes dirty cached rows back) and saves the host store; `load`
restores it and starts from an empty cache. Evaluation reads rows straight from
the flushed host store per batch (`eval_view`), so it neither updates nor
disturbs the cache.
"""

from __future__ import annotations

import collections
import functools
import math
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxctr import parallel
from jaxctr.data import loader as loader_lib
from jaxctr.embeddings import collection as coll_lib
from jaxctr.embeddings import sharded
from jaxctr.embeddings.cache_policy import CachePlanner
from jaxctr.embeddings.host_store import HostStore

GROUP = "offload"


def offloaded_tables(cfg, tables: Sequence) -> dict[str, str]:
  """Pins {table name: "offload"} of the tables ``config.offload`` names (none if disabled)."""
  if not cfg.enabled:
    return {}
  names = {t.name for t in tables}
  want = set(cfg.tables)
  if want - names:
    raise ValueError(f"config.offload.tables: unknown {sorted(want - names)}; have {sorted(names)}")
  chosen = [t.name for t in tables if (t.name in want if want else t.vocab_size >= cfg.min_rows)]
  return {n: GROUP for n in chosen}


def cache_slots(rows: int, cache_fraction: float, cache_rows: int) -> int:
  """Device cache slots of a stack of ``rows`` rows (``cache_rows`` wins if > 0)."""
  slots = cache_rows or math.ceil(cache_fraction * rows)
  return int(min(max(slots, 1), rows))


@jax.jit
def _read_slots(entry, slots):
  """The rows ``slots`` hold (the victims' rows; out-of-range slots read zeros)."""
  return {
    k: v.at[slots].get(mode="fill", fill_value=0, unique_indices=True) for k, v in entry.items()
  }


@functools.partial(jax.jit, donate_argnums=(0,))
def _write_slots(entry, slots, rows):
  """Writes ``rows`` into ``slots`` of the donated cache, in place (out of range: dropped)."""
  return {
    k: v.at[slots].set(rows[k].astype(v.dtype), mode="drop", unique_indices=True)
    for k, v in entry.items()
  }


def _swap(entry, slots, rows):
  """Returns (cache with ``rows`` in ``slots``, the rows those slots held before).

  Two dispatches, not one jit: XLA on CPU copies a donated buffer that the same computation
  also reads (a gather before a scatter), i.e. the whole cache twice per step. Apart, the
  read finishes before the donated write reuses the buffer in place, and a step costs the
  same at any cache size.
  """
  old = _read_slots(entry, slots)
  return _write_slots(entry, slots, rows), old


def _lookahead(items: Iterator, n: int) -> Iterator:
  """Yields ``(item, host ids of the next <= n items)``."""
  buf: collections.deque = collections.deque()
  for x in items:
    buf.append(x)
    if len(buf) > n:
      first = buf.popleft()
      yield first, [y[1] for y in buf]
  while buf:
    first = buf.popleft()
    yield first, [y[1] for y in buf]


class _Cancelled(Exception):
  """A planner thread of a closed pipeline was waiting; nobody consumes its result."""


class OffloadedStack:
  """Host store, planner and statistics of one offloaded stack."""

  def __init__(self, stack, key, num_slots: int, policy: str, pin_window: int, disk_dir: str):
    self.stack = stack
    self.num_slots = num_slots
    t0 = time.perf_counter()
    self.store = HostStore(stack, key, disk_dir)
    logging.info(
      "offload %s: %d rows in host %s (%.1f MB), %d cache slots (%.1f MB), init %.1fs",
      stack.name,
      stack.rows,
      "memmap" if disk_dir else "RAM",
      stack.rows * self.store.row_bytes / 1e6,
      num_slots,
      num_slots * self.store.row_bytes / 1e6,
      time.perf_counter() - t0,
    )
    self.planner = CachePlanner(stack.rows, num_slots, policy, pin_window)
    # What the device cache holds after the last *applied* swap (main thread's view).
    self.applied_row_of = np.full(num_slots, -1, np.int64)
    self.applied_dirty = np.zeros(num_slots, bool)
    # Seq of the plan whose write-back a row waits for (-1: none pending).
    self.evicted_seq = np.full(stack.rows, -1, np.int64)
    self.offsets = np.asarray(stack.offsets, np.int64)
    self.table_names = [t.name for t in stack.tables]
    self.layout = None  # a row_wise layout of the slots when the cache is sharded

  def phys(self, slots: np.ndarray) -> np.ndarray:
    """Physical rows of cache ``slots`` (out-of-range slots stay distinct and out of range)."""
    if self.layout is None:
      return slots
    lay = self.layout
    real = slots < self.num_slots
    out = np.empty_like(slots)
    shard, local = lay.locate(slots[real])
    out[real] = shard * lay.shard_rows + local
    out[~real] = lay.num_shards * lay.shard_rows + np.arange(int((~real).sum()))
    return out

  def device_cache(self, mesh, axes: tuple[str, ...]) -> dict[str, jax.Array]:
    """An empty cache on the devices: split over ``axes`` in its layout, else replicated."""
    spec = None
    virtual = self.empty_cache()
    if self.layout is not None:
      spec = jax.sharding.PartitionSpec(axes)
      virtual = {k: self.layout.to_physical(np.asarray(v)) for k, v in virtual.items()}
    return {k: parallel.put_global(v, mesh, spec) for k, v in virtual.items()}

  def empty_cache(self) -> dict[str, jax.Array]:
    return {k: jnp.zeros((self.num_slots, w), d) for k, (w, d) in self.store.layout.items()}

  def per_table(self, rows: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    t = np.searchsorted(self.offsets, rows, side="right") - 1
    return np.bincount(t, weights=weights, minlength=len(self.offsets))


class OffloadManager:
  """Runs the cache of every offloaded stack of an `EmbeddingCollection`.

  Args:
    collection: The collection; stacks whose group is "offload" are cached.
    mesh: Mesh the cache and transfers are replicated over.
    key: The key `EmbeddingCollection.init` would get (host stores match it).
    cache_fraction: Cache slots as a fraction of a stack's rows.
    cache_rows: Slots per stack if > 0 (overrides ``cache_fraction``).
    policy: "lru" or "lfu".
    depth: Batches the planner thread runs ahead of the train step.
    disk_dir: Memory-map the host stores under this directory if set.
    layouts: Row-wise layouts of the caches split over the mesh, by stack (the
      collection was sharded with them as ``deferred``); a stack without one has a
      replicated cache.
  """

  def __init__(
    self,
    collection: coll_lib.EmbeddingCollection,
    mesh,
    key: jax.Array,
    *,
    cache_fraction: float = 0.1,
    cache_rows: int = 0,
    policy: str = "lru",
    depth: int = 2,
    disk_dir: str = "",
    layouts=None,
  ):
    self.collection = collection
    self.mesh = mesh
    self.depth = max(depth, 1)
    # Upcoming batches whose rows the planner does not evict: without it, ~1 of the ~700 rows
    # a 2M-slot LRU cache evicts per batch is needed again within a few batches, and the
    # planner waits for its write-back, i.e. for the device to catch up (pipeline drained).
    self.lookahead = self.depth + 2
    # Batches planned before the current one and maybe not trained yet: up to `depth` in the
    # queue and the one the train step runs now.
    pin_window = self.depth + 1
    self.stacks: dict[str, OffloadedStack] = {}
    for s in collection.stacks:
      if s.group != GROUP:
        continue
      slots = cache_slots(s.rows, cache_fraction, cache_rows)
      self.stacks[s.name] = OffloadedStack(s, key, slots, policy, pin_window, disk_dir)
      # A split cache: each device holds 1/n of the slots, like a row_wise table; its ids
      # are routed (sharded.route) after they are mapped to slots.
      self.stacks[s.name].layout = (layouts or {}).get(s.name)
    self._cv = threading.Condition()
    self._written_seq = -1  # every write-back of plans <= this is in the host store
    self._applied_seq = -1
    self._generation = 0
    self._error: BaseException | None = None
    self._wb_queue: queue.Queue = queue.Queue()
    self._wb_thread = threading.Thread(target=self._write_back_loop, daemon=True, name="offload-wb")
    self._wb_thread.start()
    self._stats: dict[str, float] = {}
    self._steps = 0

  # ------------------------------------------------------------------ state
  def empty_cache(self, name: str) -> dict[str, jax.Array]:
    """An empty device cache of stack ``name``, split in its layout or replicated."""
    placement = self.collection.placement
    return self.stacks[name].device_cache(self.mesh, placement.axes if placement else ())

  def num_bytes(self) -> dict[str, int]:
    """Host store and device cache bytes over all offloaded stacks."""
    host = sum(o.stack.rows * o.store.row_bytes for o in self.stacks.values())
    dev = sum(o.num_slots * o.store.row_bytes for o in self.stacks.values())
    return {"host_bytes": host, "cache_bytes": dev}

  # --------------------------------------------------------------- pipeline
  def pipeline(self, items: Iterator, *, train: bool) -> Iterator:
    """Stage 2 over `Trainer._device_batch` outputs ``(dev, host_ids, host_batch)``.

    Train items become ``(dev, slot_ids, host_batch, record)``; eval items
    ``(dev, ids, host_batch)`` whose ids carry the batch's rows (`eval_view`).
    """
    if not train:
      return loader_lib.prefetch(items, self.depth, self._eval_batch)
    self._restart()
    gen = self._generation
    return loader_lib.prefetch(
      _lookahead(items, self.lookahead), self.depth, lambda x: self._plan_batch(x[0], gen, x[1])
    )

  def _restart(self) -> None:
    """Re-syncs the planners with the device cache; plans never applied are dropped."""
    with self._cv:
      self._generation += 1
      self._cv.notify_all()
    self._wait_written(self._applied_seq)
    for o in self.stacks.values():
      o.planner.seq = self._applied_seq + 1
      o.planner.reset_to(o.applied_row_of, o.applied_dirty)
      o.evicted_seq[:] = -1

  def _plan_batch(self, item, gen: int, upcoming: Sequence = ()):
    dev, ids, host = item[:3]
    ids = dict(ids)
    record = {"plans": {}, "slots": {}, "rows": {}}
    for name, o in self.stacks.items():
      e = ids[name]
      uniq = e["uniq"]
      n = int(np.searchsorted(uniq, o.stack.rows))
      keep = [u[u < o.stack.rows] for u in (x[name]["uniq"] for x in upcoming)]
      keep = np.concatenate(keep) if keep else None
      plan = o.planner.plan(uniq[:n], train=True, keep=keep)
      order = np.argsort(plan.slots, kind="stable")
      remap = np.arange(len(uniq), dtype=np.int32)
      remap[order] = np.arange(n, dtype=np.int32)
      new_uniq = uniq.copy()
      new_uniq[:n] = plan.slots[order]
      ids[name] = {"uniq": new_uniq, "inv": remap[e["inv"]]}
      if o.layout is not None:  # the id exchange of a sharded cache, in slot space
        ids[name] = sharded.route(o.layout, new_uniq, ids[name]["inv"])
      if plan.evict_dirty.any():
        o.evicted_seq[plan.evict_rows[plan.evict_dirty]] = plan.seq
      m = len(plan.fill_rows)
      if m:  # the planner must not read a row before its eviction reached the host store
        need = int(o.evicted_seq[plan.fill_rows].max())
        if need >= 0:
          self._wait_written(need, gen)
      size = max(128, 1 << (m - 1).bit_length())  # powers of two: few swap shapes to compile
      slots = np.empty(size, np.int32)
      slots[:m] = plan.fill_slots
      slots[m:] = o.num_slots + np.arange(size - m)  # distinct, out of range: dropped
      slots = o.phys(slots)
      got = o.store.gather(plan.fill_rows)
      rows = {}
      for k, v in got.items():
        buf = np.zeros((size, v.shape[1]), v.dtype)
        buf[:m] = v
        rows[k] = buf
      record["plans"][name] = plan
      record["slots"][name] = slots
      record["rows"][name] = rows
    record["dev"] = parallel.put_replicated(
      {"slots": record.pop("slots"), "rows": record.pop("rows")}, self.mesh
    )
    return dev, self.collection.put_ids(ids, self.mesh), host, record

  def _eval_batch(self, item):
    dev, ids, host = item[:3]
    ids = dict(ids)
    for name, o in self.stacks.items():
      e = ids[name]
      uniq = e["uniq"]
      n = int(np.searchsorted(uniq, o.stack.rows))
      got = o.store.gather(uniq[:n])
      rows = {}
      for k in ("table", "scale"):
        if k in got:
          buf = np.zeros((len(uniq), got[k].shape[1]), got[k].dtype)
          buf[:n] = got[k]
          rows[k] = buf
      new_uniq = uniq.copy()
      new_uniq[:n] = np.arange(n)  # row i of the batch's mini-table is uniq[i]
      ids[name] = {"uniq": new_uniq, "inv": e["inv"], "rows": rows}
    return dev, self.collection.put_ids(ids, self.mesh), host

  def eval_view(self, emb, ids):
    """(Traced) ``emb`` whose offloaded stacks are the eval batch's mini-tables."""
    emb = dict(emb)
    for name in self.stacks:
      emb[name] = ids[name]["rows"]
    return emb

  # ------------------------------------------------------------ main thread
  def swap(self, emb, record):
    """Loads a planned batch's missing rows into the caches; returns the new ``emb``.

    Called right before that batch's train step. Raises a worker's error, so
    no step runs after a failed write-back.
    """
    self._raise_if_failed()
    emb = dict(emb)
    wb = {}
    for name, plan in record["plans"].items():
      o = self.stacks[name]
      emb[name], old = _swap(emb[name], record["dev"]["slots"][name], record["dev"]["rows"][name])
      o.applied_row_of[plan.fill_slots] = plan.fill_rows
      o.applied_dirty[plan.fill_slots] = False
      o.applied_dirty[plan.slots] = True
      if plan.evict_dirty.any():
        for v in old.values():
          v.copy_to_host_async()
        wb[name] = (plan, old)
      self._count(o, plan)
    seq = next(iter(record["plans"].values())).seq if record["plans"] else self._applied_seq + 1
    self._applied_seq = seq
    self._wb_queue.put((seq, wb))
    return emb

  def _count(self, o: OffloadedStack, plan) -> None:
    hit_rows = o.applied_row_of[plan.slots[plan.hit]]  # hit slots kept their rows
    hits = o.per_table(hit_rows)
    looked = hits + o.per_table(plan.fill_rows)
    fills = o.per_table(plan.fill_rows)
    outs = o.per_table(plan.evict_rows[plan.evict_dirty])
    for i, t in enumerate(o.table_names):
      for k, v in (("lookups", looked[i]), ("hits", hits[i]), ("in", fills[i]), ("out", outs[i])):
        key = f"{t}/{k}"
        self._stats[key] = self._stats.get(key, 0.0) + float(v)
    self._stats[f"{o.stack.name}/row_bytes"] = float(o.store.row_bytes)

  def metrics(self) -> dict[str, float]:
    """Per-table hit rate, rows in/out and bytes per step since the last call (then resets)."""
    out = {}
    steps = max(self._steps_since(), 1)
    for o in self.stacks.values():
      rb = o.store.row_bytes
      for t in o.table_names:
        g = lambda k, t=t: self._stats.get(f"{t}/{k}", 0.0)
        if g("lookups"):
          out[f"offload/{t}/hit_rate"] = g("hits") / g("lookups")
        out[f"offload/{t}/rows_in_per_step"] = g("in") / steps
        out[f"offload/{t}/rows_out_per_step"] = g("out") / steps
        out[f"offload/{t}/bytes_per_step"] = (g("in") + g("out")) * rb / steps
    self._stats = {}
    return out

  def _steps_since(self) -> int:
    n = self._applied_seq + 1 - self._steps
    self._steps = self._applied_seq + 1
    return n

  # ------------------------------------------------------------ write-back
  def _write_back_loop(self) -> None:
    while True:
      seq, wb = self._wb_queue.get()
      try:
        for name, (plan, old) in wb.items():
          o = self.stacks[name]
          m = len(plan.fill_rows)
          keep = plan.evict_dirty
          vals = {k: np.asarray(v)[:m][keep] for k, v in old.items()}
          o.store.scatter(plan.evict_rows[keep], vals)
      except BaseException as e:  # noqa: B036 - surfaced in the main and planner threads
        logging.error("offload write-back of batch %d failed: %r", seq, e)
        with self._cv:
          self._error = e
          self._cv.notify_all()
        return
      with self._cv:
        self._written_seq = seq
        self._cv.notify_all()

  def _raise_if_failed(self) -> None:
    if self._error is not None:
      raise RuntimeError("offload write-back thread failed") from self._error

  def _wait_written(self, seq: int, gen: int | None = None) -> None:
    with self._cv:
      while self._written_seq < seq:
        self._raise_if_failed()
        if gen is not None and gen != self._generation:
          raise _Cancelled()
        self._cv.wait(0.1)
      self._raise_if_failed()

  # ------------------------------------------------------------- checkpoint
  def flush(self, emb) -> None:
    """Writes every dirty cached row back, so the host stores hold the current tables."""
    self._wait_written(self._applied_seq)
    for name, o in self.stacks.items():
      slots = np.flatnonzero((o.applied_row_of >= 0) & o.applied_dirty)
      if not len(slots):
        continue
      vals = {k: np.asarray(v)[o.phys(slots)] for k, v in emb[name].items()}
      o.store.scatter(o.applied_row_of[slots], vals)
      o.applied_dirty[slots] = False

  def load(self, name: str, arrays) -> dict[str, jax.Array]:
    """Takes whole rows of stack ``name`` into its host store; returns an empty cache."""
    self._wait_written(self._applied_seq)
    o = self.stacks[name]
    for k, v in arrays.items():
      o.store.arrays[k][:] = v
    o.applied_row_of[:] = -1
    o.applied_dirty[:] = False
    o.evicted_seq[:] = -1
    return self.empty_cache(name)
