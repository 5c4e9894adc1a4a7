"""Bounded-memory sketches of the hashed ids of a training split.

`HotSet` finds the most frequent ids of a stream with a count-min sketch (Cormode and
Muthukrishnan, 2005) plus a candidate set: per chunk, every id is counted into `depth` rows
of `width` counters (vectorised with `bincount`), and only ids whose estimate reaches the
smallest estimate of the current candidates join them; the candidates are cut back to
`capacity`. Memory is `depth * width` counters and `capacity` candidates, whatever the
number of distinct ids. Count-min only over-counts, so frequent ids are never missed; rare
ids sharing counters with frequent ones may enter as false hot ids. With `sample_every=s`
only every s-th row is counted: frequent ids stay frequent in a regular sample, and the
per-chunk sort (the sketch's main cost) runs on 1/s of the rows.

`DistinctCount` estimates the number of distinct ids with k minimum values (Bar-Yossef et
al., 2002) of the already uniformly distributed hashed ids; it sizes the bucketed tables
of hashed features (`bucket_fraction` and `hot_fraction` are fractions of it).
"""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_MULT = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F), _U64(0x165667B19E3779F9))


class HotSet:
  """Approximate top-`capacity` ids of an int64 id stream (see the module docstring)."""

  def __init__(self, capacity: int, width: int = 1 << 16, depth: int = 2, sample_every: int = 1):
    if not 1 <= depth <= len(_MULT):
      raise ValueError(f"depth must be in [1, {len(_MULT)}], got {depth}")
    self.capacity, self.sample_every = capacity, sample_every
    self.bits = max(int(width - 1).bit_length(), 1)
    self.counts = np.zeros((depth, 1 << self.bits), np.int64)
    self.candidates = np.zeros(0, np.int64)

  def _slots(self, ids: np.ndarray) -> list[np.ndarray]:
    u = ids.view(np.uint64)
    with np.errstate(over="ignore"):
      return [((u * m) >> _U64(64 - self.bits)).astype(np.intp) for m in _MULT[: len(self.counts)]]

  def _estimate(self, ids: np.ndarray, slots=None) -> np.ndarray:
    slots = self._slots(ids) if slots is None else slots
    return np.min([row[s] for row, s in zip(self.counts, slots, strict=True)], axis=0)

  def add(self, ids: np.ndarray) -> None:
    if self.capacity <= 0 or not len(ids):
      return
    ids = np.asarray(ids, np.int64)[:: self.sample_every]
    # Counted per distinct id of the chunk: the sketch and the candidate test then touch each
    # id once, however often it repeats (hot ids repeat most).
    ids, reps = np.unique(ids, return_counts=True)
    slots = self._slots(ids)
    for row, s in zip(self.counts, slots, strict=True):
      row += np.bincount(s, weights=reps, minlength=len(row)).astype(np.int64)
    est = self._estimate(ids, slots)
    floor = 0
    if len(self.candidates) >= self.capacity:
      floor = int(self._estimate(self.candidates).min())
    ok = est >= floor
    new, est = ids[ok], est[ok]
    if len(new) > self.capacity:  # only the chunk's top `capacity` can stay
      new = new[np.argpartition(-est, self.capacity)[: self.capacity]]
    cand = np.union1d(self.candidates, new)
    if len(cand) > self.capacity:
      e = self._estimate(cand)
      keep = np.lexsort((cand, -e))[: self.capacity]  # by estimate, ties by id
      cand = np.sort(cand[keep])
    self.candidates = cand

  def ranked(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, estimated counts) of the top `k` (default all) candidates, most frequent first."""
    e = self._estimate(self.candidates) if len(self.candidates) else np.zeros(0, np.int64)
    order = np.lexsort((self.candidates, -e))[:k]
    return self.candidates[order], e[order]


class DistinctCount:
  """k-minimum-values estimate of the number of distinct uniformly hashed int64 ids."""

  def __init__(self, k: int = 1024):
    self.k = k
    self.mins = np.zeros(0, np.uint64)

  def add(self, ids: np.ndarray) -> None:
    # Mixed once more so that ids with structure (e.g. the hot ranks 1..k) spread uniformly.
    with np.errstate(over="ignore"):
      u = np.asarray(ids, np.int64).view(np.uint64) * _MULT[1]
      u ^= u >> _U64(29)
    if len(self.mins) >= self.k:
      u = u[u < self.mins[-1]]
    if len(u) > self.k:  # O(n): only the chunk's k smallest distinct values can stay
      head = np.unique(np.partition(u, self.k)[: self.k])
      # Repeats among the k smallest (a frequent id) would hide larger distinct values.
      u = head if len(head) == self.k else np.unique(u)[: self.k]
    self.mins = np.union1d(self.mins, u)[: self.k]

  def estimate(self) -> int:
    if len(self.mins) < self.k:
      return len(self.mins)  # exact below k distinct values
    return int((self.k - 1) * 2.0**64 / (float(self.mins[-1]) + 1.0))
