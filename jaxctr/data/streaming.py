"""Streaming input: a Grain pipeline over a split's chunks, a few windows in memory at a time.

Per epoch `e` the chunk order is Grain's index shuffle seeded with `s + e`, where `s`
derives from `seed` alone; consecutive `window_chunks` chunks of that order form a window,
read as one and its rows shuffled by `random_map` (seeded by the window's index over all
epochs). An epoch's windows, in order, are rebatched into global batches of `batch_size`
(`RebatchIterDataset`); batches never span two epochs.

Everything a batch holds is a function of `(seed, step)` and the data, and a window's chunks
and row count are known from the order alone, so a pipeline for `start_step=k` slices the
window dataset at the window holding the first row of batch `k` and skips the rows before
it: skipped windows are never read.

Memory: Grain reads `read_ahead` windows ahead in as many threads (its default of hundreds
would buffer a good part of a split); besides those, the window being rebatched and the
loader's prefetched batches are held.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence

import grain
import numpy as np

from jaxctr.data.storage import SplitSource


def _read(source: SplitSource, ids: np.ndarray) -> dict[str, np.ndarray]:
  cs = source.chunks(ids)
  if len(cs) == 1:
    return cs[0]
  return {k: np.concatenate([c[k] for c in cs]) for k in cs[0]}


def _permute_rows(window: dict[str, np.ndarray], rng: np.random.Generator) -> dict:
  idx = rng.permutation(len(window["label"]))
  return {k: np.take(v, idx, axis=0) for k, v in window.items()}


def _skip_first(index: int, window: dict[str, np.ndarray], rows: int) -> dict:
  return {k: v[rows:] for k, v in window.items()} if index == 0 else window


class WindowStream:
  """Window-shuffled global batches of one split, as a Grain pipeline per epoch.

  Args:
    source: The split.
    batch_size: Global batch size.
    shuffle: Shuffle chunk order per epoch and rows within windows; else file order.
    seed: Seed of the shuffles.
    window_chunks: Chunks per window.
    drop_remainder: Drop each epoch's last partial batch (else it is yielded short).
    read_ahead: Windows read ahead, each in its own thread (0: read when needed).
  """

  def __init__(
    self,
    source: SplitSource,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    window_chunks: int,
    drop_remainder: bool,
    read_ahead: int,
  ):
    self.source, self.batch_size = source, batch_size
    self.drop_remainder = drop_remainder
    self.read_options = grain.ReadOptions(num_threads=read_ahead, prefetch_buffer_size=read_ahead)
    order = grain.MapDataset.range(source.num_chunks)
    if shuffle:
      order = order.seed(seed).shuffle()
    # Grain batches each epoch separately: window ids `e * W + w` are window w of epoch e.
    self.window_ids = order.batch(window_chunks, batch_fn=np.asarray).repeat()
    self.windows_per_epoch = -(-source.num_chunks // window_chunks)
    windows = self.window_ids.map(functools.partial(_read, source))
    self.windows = windows.random_map(_permute_rows) if shuffle else windows

  def window_rows(self, g: int) -> int:
    """Rows of window `g` (over all epochs), from the chunk order alone."""
    return sum(self.source.chunk_len(int(i)) for i in self.window_ids[g])

  def epoch(self, epoch: int, first_step: int) -> grain.IterDataset:
    """Batches of `epoch` from its step `first_step` on."""
    skip, g = first_step * self.batch_size, epoch * self.windows_per_epoch
    while (rows := self.window_rows(g)) <= skip:  # never read: resume costs no I/O
      skip -= rows
      g += 1
    ds = self.windows[g : (epoch + 1) * self.windows_per_epoch]
    if skip:
      ds = ds.map_with_index(functools.partial(_skip_first, rows=skip))
    return grain.experimental.RebatchIterDataset(
      ds.to_iter_dataset(self.read_options), self.batch_size, self.drop_remainder
    )


def stream(
  windows: WindowStream, epochs: Iterable[tuple[int, int]], finish: Callable[[dict], dict]
) -> Iterator[dict[str, np.ndarray]]:
  """`finish(batch)` for the batches of `epochs` ((epoch, first step) pairs), in order."""
  for e, j in epochs:
    it = iter(windows.epoch(e, j).map(finish))
    try:
      yield from it
    finally:  # stops the read-ahead threads when the consumer leaves early
      it.close()


class ChunkSubset(SplitSource):
  """The chunks ``ids`` of ``source``, as a split of their own (one input shard's)."""

  def __init__(self, source: SplitSource, ids: Sequence[int]):
    self.source, self.ids = source, [int(i) for i in ids]
    self.chunk_rows = source.chunk_rows
    self.num_rows = sum(source.chunk_len(i) for i in self.ids)

  @property
  def num_chunks(self) -> int:
    return len(self.ids)

  def chunk_len(self, i: int) -> int:
    return self.source.chunk_len(self.ids[i])

  def chunk(self, i: int) -> dict[str, np.ndarray]:
    return self.source.chunk(self.ids[i])

  def chunks(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    return self.source.chunks([self.ids[int(i)] for i in indices])


def input_shards(source: SplitSource, count: int) -> list[ChunkSubset]:
  """The split's chunks dealt to ``count`` input shards (chunk i to shard i % count)."""
  if source.num_chunks < count:
    raise ValueError(
      f"config.dataset.input_shards={count} exceeds the split's {source.num_chunks} chunks"
    )
  return [ChunkSubset(source, range(v, source.num_chunks, count)) for v in range(count)]


def shard_seed(seed: int, shard: int) -> int:
  """Input shard ``shard``'s shuffle seed: independent streams, a function of both."""
  return int(np.random.SeedSequence([seed, shard]).generate_state(1)[0])


def sharded_stream(
  shards: Sequence[WindowStream],
  epochs: Iterable[tuple[int, int]],
  steps_per_epoch: int,
  finish: Callable[[dict], dict],
) -> Iterator[dict[str, np.ndarray]]:
  """`finish(parts)` of each step's batch of every shard in ``shards``, in order.

  A shard whose epoch has no batch left (evaluation, where shards end at different steps)
  contributes an empty part; `finish` pads it.
  """
  template = None
  for e, j in epochs:
    its = [iter(s.epoch(e, j)) for s in shards]
    try:
      for _ in range(j, steps_per_epoch):
        parts = [next(it, None) for it in its]
        template = next((p for p in parts if p is not None), template)
        empty = {k: v[:0] for k, v in template.items()}
        yield finish([empty if p is None else p for p in parts])
    finally:
      for it in its:
        it.close()
