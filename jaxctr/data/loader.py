"""Deterministic, resumable, shardable batch loader with background prefetch.

Batch `k` (global step) is a pure function of `(seed, k)` and the data: epoch
`e = k // steps_per_epoch` uses a permutation derived from `(seed, e)`, so a loader
started at `start_step=k` yields exactly what a loader from step 0 yields from its k-th
batch on (bit-exact resume). `batch_size` is the global batch; shard `i` of `n` gets rows
`[i * B/n, (i + 1) * B/n)` of every global batch, so hosts see disjoint parts.

In-memory mode (default) reads the whole split into contiguous arrays once. Streaming mode
(`in_memory=False`, `config.dataset.streaming`) is a Grain pipeline (`streaming.py`): it
shuffles the chunk order per epoch and rows within windows of `window_chunks` chunks
(`config.dataset.shuffle_window`), reading `read_ahead` windows ahead
(`config.dataset.read_ahead`), so memory does not grow with the split. Resuming at step k
skips the windows before it without reading them. Both modes visit every row once per epoch
(with `drop_remainder`, all but the same number of rows), in different orders.

With `input_shards` S > 1 (streaming only) chunk i belongs to input shard i % S, and each
shard is its own window stream (seeded by `(seed, shard)`) giving B/S rows of every batch:
shard `i` of `n` (a process) reads only input shards [i S/n, (i + 1) S/n), and a batch is
the same for every `n` that divides S. An epoch has as many steps as its shortest shard has
full batches (`drop_remainder`), or as its longest has batches (evaluation: the others pad).

With `drop_remainder=False` (evaluation) the last global batch is padded to `batch_size`
and every batch carries `mask` f32 [B] (1 real row, 0 padding).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from jaxctr.data.storage import SplitSource

_END = object()


class _Raised:
  def __init__(self, exc: BaseException):
    self.exc = exc


def prefetch(
  iterable: Iterable,
  size: int = 2,
  fn: Callable | None = None,
  cancel: Callable[[], None] | None = None,
) -> Iterator:
  """Iterates `iterable` (mapping `fn` over it) in a background thread, `size` items ahead.

  An exception raised by the iterable or `fn` is re-raised in the consumer. If the consumer
  stops early, the worker notices within a fraction of a second and exits; `cancel` (if
  given) is called then, to end an `fn` call that would otherwise wait on.
  """
  if size <= 0:
    yield from (fn(x) for x in iterable) if fn else iterable
    return
  q: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()

  def put(item) -> bool:
    while not stop.is_set():
      try:
        q.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def work():
    it = iter(iterable)
    try:
      for x in it:
        if not put(fn(x) if fn else x):
          return
      put(_END)
    except BaseException as e:  # noqa: B036 - forwarded to the consumer, not swallowed
      put(_Raised(e))
    finally:
      if hasattr(it, "close"):  # a nested prefetch stops its own worker too
        it.close()

  t = threading.Thread(target=work, daemon=True, name="jaxctr-prefetch")
  t.start()
  try:
    while True:
      item = q.get()
      if item is _END:
        return
      if isinstance(item, _Raised):
        raise item.exc
      yield item
  finally:
    stop.set()
    if cancel is not None:
      cancel()
    # Wait for the item in progress (it may be placing arrays on devices): a worker still in
    # XLA when the interpreter exits aborts the process.
    t.join(timeout=60)


def _take(arrays: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
  return {k: np.take(v, idx, axis=0) for k, v in arrays.items()}


def _pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  n = len(batch["label"])
  out = {}
  for k, v in batch.items():
    # Sequence columns pad with -1 (their "no id" value); everything else with 0.
    fill = -1 if (v.dtype.kind == "i" and k != "cat") else 0
    pad = np.full((size - n,) + v.shape[1:], fill, v.dtype)
    out[k] = np.concatenate([v, pad])
  mask = np.zeros(size, np.float32)
  mask[:n] = 1.0
  out["mask"] = mask
  return out


class Loader:
  """Iterates numpy batch dicts `{"label", "cat", "num", ...}` from a `SplitSource`."""

  def __init__(
    self,
    source: SplitSource,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    start_step: int = 0,
    shard_index: int = 0,
    num_shards: int = 1,
    prefetch: int = 2,
    in_memory: bool = True,
    window_chunks: int = 8,
    read_ahead: int = 2,
    input_shards: int = 1,
  ):
    if batch_size % num_shards:
      raise ValueError(f"batch_size {batch_size} is not divisible by num_shards {num_shards}")
    if window_chunks < 1:
      raise ValueError(
        f"window_chunks (config.dataset.shuffle_window) must be >= 1, got {window_chunks}"
      )
    if read_ahead < 0:
      raise ValueError(f"read_ahead (config.dataset.read_ahead) must be >= 0, got {read_ahead}")
    if not 0 <= shard_index < num_shards:
      raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    if input_shards > 1 and (in_memory or input_shards % num_shards or batch_size % input_shards):
      raise ValueError(
        f"config.dataset.input_shards={input_shards} needs config.dataset.streaming=True, a "
        f"multiple of the {num_shards} process(es) reading the data and a divisor of the "
        f"batch size {batch_size}"
      )
    self.source = source
    self.batch_size = batch_size
    self.local_batch_size = batch_size // num_shards
    self.shuffle, self.seed, self.num_epochs = shuffle, seed, num_epochs
    self.drop_remainder, self.start_step = drop_remainder, start_step
    self.shard_index, self.num_shards = shard_index, num_shards
    self.prefetch_size, self.in_memory, self.window_chunks = prefetch, in_memory, window_chunks
    self.read_ahead, self.input_shards = read_ahead, input_shards
    n = len(source)
    self.steps_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
    if input_shards > 1:  # each shard's stream gives B / input_shards rows of every batch
      from jaxctr.data import streaming

      self._shards = streaming.input_shards(source, input_shards)
      b = batch_size // input_shards
      per = [len(x) // b if drop_remainder else -(-len(x) // b) for x in self._shards]
      self.steps_per_epoch = min(per) if drop_remainder else max(per)
    if self.steps_per_epoch == 0:
      raise ValueError(f"split has {n} rows, fewer than one batch of {batch_size}")
    self._arrays: dict[str, np.ndarray] | None = None
    self._perm: tuple[int, np.ndarray] | None = None

  def __len__(self) -> int:
    """Number of batches this loader yields (from `start_step`)."""
    if self.num_epochs is None:
      raise TypeError("an endless loader (num_epochs=None) has no length")
    return max(self.num_epochs * self.steps_per_epoch - self.start_step, 0)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    if self.in_memory:
      return prefetch(self._in_memory_batches(), self.prefetch_size)
    from jaxctr.data import streaming  # imports Grain, which in-memory runs do without

    if self.input_shards > 1:
      return prefetch(self._sharded_batches(streaming), self.prefetch_size)
    windows = self._window_stream(streaming, self.source, self.batch_size, self.seed)
    return prefetch(streaming.stream(windows, self._epochs(), self._local), self.prefetch_size)

  def _window_stream(self, streaming, source: SplitSource, batch_size: int, seed: int):
    return streaming.WindowStream(
      source,
      batch_size,
      shuffle=self.shuffle,
      seed=seed,
      window_chunks=self.window_chunks,
      drop_remainder=self.drop_remainder,
      read_ahead=self.read_ahead,
    )

  def _sharded_batches(self, streaming) -> Iterator[dict[str, np.ndarray]]:
    """Batches from this process's input shards only: it reads no other shard's chunks."""
    per_process = self.input_shards // self.num_shards
    b = self.batch_size // self.input_shards
    mine = range(self.shard_index * per_process, (self.shard_index + 1) * per_process)
    streams = [
      self._window_stream(streaming, self._shards[v], b, streaming.shard_seed(self.seed, v))
      for v in mine
    ]

    def finish(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
      if not self.drop_remainder:
        parts = [
          _pad(p, b) if len(p["label"]) < b else dict(p, mask=np.ones(b, np.float32)) for p in parts
        ]
      return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    return streaming.sharded_stream(streams, self._epochs(), self.steps_per_epoch, finish)

  def _local(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if len(batch["label"]) < self.batch_size:
      batch = _pad(batch, self.batch_size)
    elif not self.drop_remainder:
      batch = dict(batch, mask=np.ones(self.batch_size, np.float32))
    lo = self.shard_index * self.local_batch_size
    return {k: v[lo : lo + self.local_batch_size] for k, v in batch.items()}

  def _epochs(self) -> Iterator[tuple[int, int]]:
    """(epoch, first step within it) from `start_step` on."""
    e, j = divmod(self.start_step, self.steps_per_epoch)
    while self.num_epochs is None or e < self.num_epochs:
      yield e, j
      e, j = e + 1, 0

  def _permutation(self, epoch: int) -> np.ndarray:
    cached = self._perm  # one read: concurrent iterators may replace the cache
    if cached is None or cached[0] != epoch:
      n = len(self.source)
      p = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
      cached = self._perm = (epoch, p)
    return cached[1]

  def _in_memory_batches(self) -> Iterator[dict[str, np.ndarray]]:
    if self._arrays is None:
      self._arrays = self.source.read_all()
    b = self.batch_size
    for e, j0 in self._epochs():
      perm = self._permutation(e)
      for j in range(j0, self.steps_per_epoch):
        idx = perm[j * b : (j + 1) * b]
        # Only this shard's rows are gathered; padding/masks work on the global layout.
        yield self._local(_take(self._arrays, idx)) if len(idx) < b else self._gather_local(idx)

  def _gather_local(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    lo = self.shard_index * self.local_batch_size
    out = _take(self._arrays, idx[lo : lo + self.local_batch_size])
    if not self.drop_remainder:
      out["mask"] = np.ones(self.local_batch_size, np.float32)
    return out
