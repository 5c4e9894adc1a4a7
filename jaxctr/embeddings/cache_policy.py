"""Host-side slot bookkeeping of a device embedding cache (LRU / LFU, pins, dirty rows).

`CachePlanner` maps the rows of a table to the ``num_slots`` slots of its
device cache. `plan` takes a batch's sorted distinct rows and decides, in
numpy and without touching any array on the device: each row's slot, which
rows miss, which slots receive them and which rows those slots held before
(victims, to be written back if a train batch touched them since they were
loaded). Victims are chosen among slots that are neither used by the batch
nor *pinned*: a slot used by one of the last ``pin_window`` planned batches is
pinned, because those batches may not have been trained yet.

Both policies are exact and avoid a per-batch O(slots) scan:

* LRU evicts the unpinned slots whose last batch is oldest (ties: the order of
  an ``argpartition``). It keeps a sorted pool of the oldest slots and takes
  victims from it while their stamps are unchanged (stamps only grow, so an
  unchanged entry is still among the oldest); the pool is rebuilt with one
  ``argpartition`` over the slots when it runs dry (every ~slots / 16 misses).
* LFU evicts the unpinned slots with the fewest accesses since their row was
  loaded, ties by least recent batch (empty slots first). It keeps the
  candidates with the smallest keys at the last rebuild and their largest key:
  keys only grow, except for refilled slots, which were candidates themselves,
  so every other slot's key stays above that bound and the victims are the
  smallest unpinned candidates at or below it; O(candidates) (~slots / 32) per
  batch plus one ``argpartition`` over the slots per rebuild.

So a batch costs CPU in proportion to its misses, not to the cache size, unlike a
per-batch ``argpartition`` over every slot.
"""

from __future__ import annotations

import dataclasses

import numpy as np

POLICIES = ("lru", "lfu")
_EMPTY = -(1 << 40)
_LFU_SHIFT = 40  # LFU key: count << 40 | (last batch + 1); counts saturate below 2**22
_LFU_MAX_COUNT = (1 << 22) - 1


class CacheTooSmallError(RuntimeError):
  """A batch needs more free slots than the cache has unpinned."""


@dataclasses.dataclass(frozen=True)
class SlotPlan:
  """One batch's cache decisions (all arrays host numpy).

  Attributes:
    seq: Sequence number of the batch (0, 1, ... in planning order).
    slots: [n] int32 slot of each planned row, aligned with the input rows.
    hit: [n] bool, the row was cached before this batch.
    fill_slots: [m] int32 slots that receive the missing rows.
    fill_rows: [m] int64 rows loaded into ``fill_slots``.
    evict_rows: [m] int64 row each fill slot held before (-1: it was empty).
    evict_dirty: [m] bool, that row must be written back to the host store.
  """

  seq: int
  slots: np.ndarray
  hit: np.ndarray
  fill_slots: np.ndarray
  fill_rows: np.ndarray
  evict_rows: np.ndarray
  evict_dirty: np.ndarray


class CachePlanner:
  """Row-to-slot index and replacement policy of one cached table.

  Args:
    num_rows: Rows of the table (host store).
    num_slots: Slots of the device cache.
    policy: "lru" or "lfu".
    pin_window: Earlier batches whose slots may not be evicted.
  """

  def __init__(self, num_rows: int, num_slots: int, policy: str = "lru", pin_window: int = 0):
    if policy not in POLICIES:
      raise ValueError(f"config.offload.policy: unknown {policy!r}; expected one of {POLICIES}")
    if not 0 < num_slots <= num_rows:
      raise ValueError(f"cache slots must be in [1, {num_rows}], got {num_slots}")
    self.num_rows, self.num_slots = num_rows, num_slots
    self.policy, self.pin_window = policy, pin_window
    self.slot_of = np.full(num_rows, -1, np.int32)
    self.row_of = np.full(num_slots, -1, np.int64)
    # Seq of the slot's last batch; empty slots are older than any batch (never pinned).
    self.last_used = np.full(num_slots, _EMPTY, np.int64)
    self.count = np.zeros(num_slots, np.int64)
    self.dirty = np.zeros(num_slots, bool)
    self.seq = 0
    self._pool = np.empty(0, np.int64)
    self._pool_stamp = np.empty(0, np.int64)
    self._pool_pos = 0
    self._cand = np.empty(0, np.int64)  # LFU candidates (see _victims_lfu)
    self._cand_bound = -1
    self._keep = np.zeros(num_slots, bool)  # slots of upcoming batches' rows (plan's ``keep``)
    self._num_keep = 0

  def reset_to(self, row_of: np.ndarray, dirty: np.ndarray) -> None:
    """Restarts from a known slot content (e.g. what the device cache holds)."""
    self.row_of = np.asarray(row_of, np.int64).copy()
    self.slot_of[:] = -1
    full = np.flatnonzero(self.row_of >= 0)
    self.slot_of[self.row_of[full]] = full
    self.last_used[:] = _EMPTY
    self.last_used[full] = self.seq - 1 - self.pin_window  # cached, unpinned, oldest
    self.count[:] = 0
    self.count[full] = 1
    self.dirty = np.asarray(dirty, bool).copy()
    self._pool = np.empty(0, np.int64)
    self._cand, self._cand_bound = np.empty(0, np.int64), -1

  def _pinned(self, seq: int) -> np.ndarray:
    return self.last_used >= seq - self.pin_window

  def _victims_lru(self, m: int, seq: int) -> np.ndarray:
    out, need = [], m
    for _ in range(3):  # pool passes; a rebuild covers every unpinned slot
      while need and self._pool_pos < len(self._pool):
        c = self._pool[self._pool_pos : self._pool_pos + need]
        st = self._pool_stamp[self._pool_pos : self._pool_pos + need]
        self._pool_pos += len(c)
        ok = (self.last_used[c] == st) & (st < seq - self.pin_window) & ~self._keep[c]
        out.append(c[ok])
        need -= int(ok.sum())
      if not need:
        break
      # Rebuild the pool: the oldest unpinned slots, oldest first.
      key = np.where(self._pinned(seq) | self._keep, np.iinfo(np.int64).max, self.last_used)
      for c in out:  # chosen in this call already; their stamps change only after it
        key[c] = np.iinfo(np.int64).max
      free = int((key != np.iinfo(np.int64).max).sum())
      k = min(free, max(4 * need, 1024, self.num_slots // 16))
      if k < need:
        break
      idx = np.argpartition(key, k - 1)[:k] if k < self.num_slots else np.arange(self.num_slots)
      idx = idx[np.argsort(key[idx], kind="stable")]
      idx = idx[key[idx] != np.iinfo(np.int64).max]
      self._pool, self._pool_stamp, self._pool_pos = idx, self.last_used[idx].copy(), 0
    got = np.concatenate(out) if out else np.empty(0, np.int64)
    if len(got) < m:
      raise self._too_small(m, seq)
    return got

  def _lfu_key(self, slots) -> np.ndarray:
    """(access count, last batch) as one int64: empty slots (count 0) first."""
    count = np.minimum(self.count[slots], _LFU_MAX_COUNT)
    return (count << _LFU_SHIFT) | np.maximum(self.last_used[slots] + 1, 0)

  def _victims_lfu(self, m: int, seq: int) -> np.ndarray:
    # Candidates: the slots with the smallest keys at the last rebuild (pinned or not), bound
    # the largest of them. Keys only grow (hits) except when a slot is refilled, and refilled
    # slots are candidates (they were victims), so every other slot's key is still >= bound:
    # the smallest unpinned candidates with key <= bound are the exact LFU victims.
    for rebuilt in (False, True):
      if rebuilt:
        self._rebuild_lfu(m, seq)
      c = self._cand
      key = self._lfu_key(c)
      ok = (key <= self._cand_bound) & ~(self.last_used[c] >= seq - self.pin_window)
      ok &= ~self._keep[c]
      if int(ok.sum()) >= m:
        c, key = c[ok], key[ok]
        if m < len(c):
          part = np.argpartition(key, m - 1)[:m]
          c, key = c[part], key[part]
        return c[np.argsort(key, kind="stable")]
    raise self._too_small(m, seq)

  def _rebuild_lfu(self, m: int, seq: int) -> None:
    """Candidates: the smallest keys over all slots, enough to hold ``m`` unpinned ones."""
    pinned = int(self._pinned(seq).sum())
    k = min(self.num_slots, pinned + self._num_keep + max(8 * m, 1024, self.num_slots // 32))
    key = self._lfu_key(slice(None))
    idx = np.argpartition(key, k - 1)[:k] if k < self.num_slots else np.arange(self.num_slots)
    self._cand, self._cand_bound = idx, int(key[idx].max())

  def _victims(self, m: int, seq: int, keep: np.ndarray | None) -> np.ndarray:
    victims = self._victims_lru if self.policy == "lru" else self._victims_lfu
    kept = np.empty(0, np.int64)
    if keep is not None and len(keep):
      kept = self.slot_of[np.asarray(keep, np.int64)]
      kept = kept[kept >= 0]
    try:
      self._keep[kept] = True
      self._num_keep = len(kept)
      try:
        return victims(m, seq)
      except CacheTooSmallError:
        if not len(kept):
          raise
      self._keep[kept] = False  # too tight to honour the lookahead: plain policy
      self._num_keep = 0
      return victims(m, seq)
    finally:
      self._keep[kept] = False
      self._num_keep = 0

  def _too_small(self, m: int, seq: int) -> CacheTooSmallError:
    free = self.num_slots - int(self._pinned(seq).sum())
    return CacheTooSmallError(
      f"batch {seq} misses {m} rows but only {free} of {self.num_slots} cache slots are unpinned "
      f"(rows of the last {self.pin_window} batches are pinned); raise config.offload.cache_rows "
      "or cache_fraction"
    )

  def plan(self, rows: np.ndarray, train: bool = True, keep: np.ndarray | None = None) -> SlotPlan:
    """Plans one batch: ``rows`` are its distinct rows (any order, all in range).

    ``train=False`` batches do not mark rows dirty (they will not be updated). ``keep``:
    rows of upcoming batches (a lookahead); their slots are not evicted unless the batch
    cannot fit otherwise, so a row is not evicted right before it is needed again.
    """
    rows = np.asarray(rows, np.int64)
    seq = self.seq
    self.seq += 1
    slots = self.slot_of[rows]
    hit = slots >= 0
    hit_slots = slots[hit]
    self.last_used[hit_slots] = seq  # pins the batch's own hits before victims are chosen
    self.count[hit_slots] += 1
    fill_rows = rows[~hit]
    m = len(fill_rows)
    if m:
      fill = self._victims(m, seq, keep).astype(np.int32)
    else:
      fill = np.empty(0, np.int32)
    evict_rows = self.row_of[fill].copy()
    evict_dirty = (evict_rows >= 0) & self.dirty[fill]
    self.slot_of[evict_rows[evict_rows >= 0]] = -1
    self.slot_of[fill_rows] = fill
    self.row_of[fill] = fill_rows
    self.last_used[fill] = seq
    self.count[fill] = 1
    self.dirty[fill] = False
    slots = slots.copy()
    slots[~hit] = fill
    if train:
      self.dirty[slots] = True
    return SlotPlan(seq, slots, hit, fill, fill_rows, evict_rows, evict_dirty)
