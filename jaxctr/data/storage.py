"""Raw file blocks, columnar chunk storage, pass-1 spill and split sources.

Raw text files are read in large blocks of whole lines (`read_blocks`; a missing or empty
file is a `DataError` naming the path); `drive_blocks` runs a format's block decoder over
them in file order (in worker processes, `fork_map`), numbering lines and accounting for
malformed rows (`ParseReport`).

A prepared split is a sequence of records, each a columnar chunk of `chunk_rows` rows
(`label` f32 [n], `cat` i32 [n, F], `num` f32 [n, N]; the last chunk may be shorter).
Decoding one TFDS example per row costs a Python call per row; one chunk per record
amortises it over thousands of rows.

`SplitSource` is what the loader reads: `len()` rows, `num_chunks`, `chunk(i)` and
`read_all()`. `ArrayRecordSplit` wraps a TFDS array_record data source (records are TFDS
examples, so TFDS decodes them, over the same array_record reader as Grain's
`ArrayRecordDataSource`); `ArraySplit` wraps in-memory arrays (tests, benchmarks, small
data).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import gzip
import itertools
import mmap
import multiprocessing
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from absl import logging

COLUMNS = ("label", "cat", "num")
MAX_LOGGED = 5
BLOCK_BYTES = 16 << 20
PIECE_BYTES = 1 << 20  # what a block decoder sees at once (see `_in_pieces`)


class DataError(ValueError):
  """Input data is missing, empty or malformed."""


def check_file(path: str | os.PathLike) -> None:
  if os.path.isdir(path):
    raise DataError(f"data file is a directory: {path}")
  if not os.path.isfile(path):
    raise DataError(f"data file not found: {path}")
  if os.path.getsize(path) == 0:
    raise DataError(f"data file is empty: {path}")
  if not os.access(path, os.R_OK):
    raise DataError(f"data file is not readable: {path}")


def open_raw(path):
  """Opens a raw file for binary reading; `.gz` files are decompressed on the fly."""
  return gzip.open(path, "rb") if os.fspath(path).endswith(".gz") else open(path, "rb")


def read_blocks(path, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
  """Yields blocks of whole lines (each ending with a newline); `.gz` files are decompressed."""
  check_file(path)
  rest = b""
  try:
    fh = open_raw(path)
  except OSError as e:
    raise DataError(f"data file cannot be read: {path}: {e.strerror}") from e
  with fh:
    while True:
      try:
        data = fh.read(block_bytes)
      except OSError as e:  # e.g. EIO on a failing disk: name the file, not a traceback
        raise DataError(f"data file cannot be read: {path}: {e.strerror}") from e
      if not data:
        break
      data = rest + data
      cut = data.rfind(b"\n") + 1
      rest = data[cut:]
      if cut:
        yield _crlf(data[:cut])
  if rest:
    yield _crlf(rest + b"\n")


def _crlf(block: bytes) -> bytes:
  return block.replace(b"\r\n", b"\n") if b"\r" in block else block


@dataclasses.dataclass
class ParsedChunk:
  label: np.ndarray | None
  cat: np.ndarray
  num: np.ndarray
  line: np.ndarray

  def __len__(self) -> int:
    return len(self.line)


@dataclasses.dataclass
class ParseReport:
  """Counts of a parse; `errors` keeps the first `MAX_LOGGED` messages."""

  rows: int = 0
  skipped: int = 0
  errors: list[str] = dataclasses.field(default_factory=list)

  def bad(self, msg: str, strict: bool) -> None:
    if strict:
      raise DataError(msg)
    self.skipped += 1
    if len(self.errors) < MAX_LOGGED:
      self.errors.append(msg)
      logging.warning("skipping malformed row: %s", msg)


# Functions and shared memory of running `fork_map` calls, by token: forked pool workers
# inherit the registry, so a function (usually a closure over large state) is never pickled.
_FNS: dict[int, tuple[Callable, mmap.mmap]] = {}
_tokens = itertools.count()
SLOT_BYTES = 64 << 20  # per in-flight item: its bytes input, then its result's array data


def _run(token: int, item, slot: int, in_bytes: int):
  """Applies function `token` to `item` (or `in_bytes` of its slot) and stores the result.

  Array data of the result goes to the slot (out-of-band pickle buffers); only the small
  pickle travels through the pool's pipe. A result too large for the slot goes whole.
  """
  fn, arena = _FNS[token]
  base = slot * SLOT_BYTES
  if in_bytes >= 0:
    item = arena[base : base + in_bytes]
  result = fn(item)
  buffers: list[pickle.PickleBuffer] = []
  meta = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
  raws = [b.raw() for b in buffers]
  if sum(r.nbytes for r in raws) > SLOT_BYTES:
    return result, None
  sizes, view = [], memoryview(arena)
  for r in raws:
    view[base : base + r.nbytes] = r
    base += r.nbytes
    sizes.append(r.nbytes)
  return meta, sizes


def _worker_init() -> None:
  """Keeps freed memory in a worker's heap (glibc only), so per-item arrays reuse pages.

  With glibc's defaults, forked workers returned freed arrays to the kernel and paid a page
  fault per 4 KiB on the next item: about 40% more CPU time than decoding in-process.
  """
  try:
    libc = ctypes.CDLL(None)
    libc.mallopt(-1, 1 << 31)  # M_TRIM_THRESHOLD
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
  except (OSError, AttributeError):
    pass


def fork_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
  """`fn(item)` for each item, in order, in `workers` forked processes when `workers > 1`.

  numpy's byte and string work holds the GIL for much of the time, so threads do not scale;
  forked workers inherit `fn` and everything it refers to. `bytes` items and the array data
  of results travel through a shared memory arena with one slot per in-flight item (one
  copy each way; a pipe needs hundreds of process switches per megabyte-sized item, files
  in /dev/shm a fresh page per 4 KiB). At most `workers + 1` items are in flight, which
  bounds memory. With fewer than two items, or `workers <= 1`, everything runs inline;
  where fork is unavailable a thread pool is used instead.
  """
  items = iter(items)
  head = list(itertools.islice(items, 2))
  if workers <= 1 or len(head) < 2:
    yield from map(fn, itertools.chain(head, items))
    return
  if "fork" not in multiprocessing.get_all_start_methods():
    with concurrent.futures.ThreadPoolExecutor(workers) as threads:
      pending: collections.deque = collections.deque()
      for item in itertools.chain(head, items):
        pending.append(threads.submit(fn, item))
        if len(pending) > workers:
          yield pending.popleft().result()
      while pending:
        yield pending.popleft().result()
    return
  token = next(_tokens)
  slots = workers + 1
  arena = mmap.mmap(-1, slots * SLOT_BYTES)  # anonymous and shared with forked children
  _FNS[token] = (fn, arena)
  pool = multiprocessing.get_context("fork").Pool(workers, _worker_init)
  view = memoryview(arena)

  def collect(job, slot):
    meta, sizes = job.get()
    if sizes is None:
      return meta
    base, bufs = slot * SLOT_BYTES, []
    for n in sizes:
      bufs.append(bytearray(view[base : base + n]))  # copied out: the slot is reused
      base += n
    return pickle.loads(meta, buffers=bufs)

  try:
    pending = collections.deque()
    for i, item in enumerate(itertools.chain(head, items)):
      slot, in_bytes = i % slots, -1
      if isinstance(item, bytes) and len(item) <= SLOT_BYTES:
        view[slot * SLOT_BYTES : slot * SLOT_BYTES + len(item)] = item
        item, in_bytes = None, len(item)
      pending.append((pool.apply_async(_run, (token, item, slot, in_bytes)), slot))
      while len(pending) > workers:
        yield collect(*pending.popleft())
    while pending:
      yield collect(*pending.popleft())
  finally:
    _FNS.pop(token, None)
    pool.terminate()
    pool.join()
    with contextlib.suppress(BufferError):  # a view still alive: the GC frees the arena
      view.release()
      arena.close()


def _in_pieces(block_fn: Callable, piece_bytes: int) -> Callable:
  """`block_fn` run on slices of about `piece_bytes` whole lines of a block, results joined.

  Block decoders make dozens of vectorised passes over temporaries several times the size of
  their input. On slices whose temporaries stay in cache those passes took about 35% less CPU
  than on one 16 MiB block, while large blocks keep file reads and worker hand-offs few.
  """

  def fn(block):
    if len(block) <= piece_bytes * 3 // 2:
      return block_fn(block)
    chunks, bad, nlines, lo = [], [], 0, 0
    while lo < len(block):
      hi = len(block)
      if hi - lo > piece_bytes * 3 // 2:  # else the rest: no small last slice
        hi = block.rfind(b"\n", lo, lo + piece_bytes) + 1
        if hi <= lo:  # a line longer than a slice: cut after it
          hi = block.find(b"\n", lo + piece_bytes) + 1 or len(block)
      c, n, b = block_fn(block[lo:hi])
      c.line = c.line + nlines
      chunks.append(c)
      bad.extend((li + nlines, msg) for li, msg in b)
      nlines += n
      lo = hi
    joined = ParsedChunk(
      label=None if chunks[0].label is None else np.concatenate([c.label for c in chunks]),
      cat=np.concatenate([c.cat for c in chunks]),
      num=np.concatenate([c.num for c in chunks]),
      line=np.concatenate([c.line for c in chunks]),
    )
    return joined, nlines, bad

  return fn


def drive_blocks(
  path, blocks, block_fn, report, strict, workers, line_base=0
) -> Iterator[ParsedChunk]:
  """Runs `block_fn` over blocks in order (in `workers` processes, see `fork_map`).

  `block_fn(block)` returns (chunk with 0-based in-block line indices, number of lines, bad
  lines); line numbers, error messages and strict mode are resolved here, in file order.
  """
  report = report if report is not None else ParseReport()
  for chunk, nlines, bad in fork_map(_in_pieces(block_fn, PIECE_BYTES), blocks, workers):
    for li, msg in bad:
      report.bad(f"{path}:{line_base + li + 1}: {msg}", strict)
    chunk.line = chunk.line + (line_base + 1)
    line_base += nlines
    report.rows += len(chunk)
    yield chunk


def rechunk(
  chunks: Iterable[dict[str, np.ndarray]], chunk_rows: int
) -> Iterator[dict[str, np.ndarray]]:
  """Re-cuts a stream of column dicts into chunks of exactly `chunk_rows` (last: rest)."""
  buf: list[dict[str, np.ndarray]] = []
  have = 0
  for c in chunks:
    n = len(c["label"])
    if n == 0:
      continue
    buf.append(c)
    have += n
    while have >= chunk_rows:
      # One buffered piece (the usual case once a large input chunk is being cut) is sliced
      # as is: concatenating it alone would copy the rest of that input again per output.
      merged = buf[0] if len(buf) == 1 else {k: np.concatenate([b[k] for b in buf]) for k in buf[0]}
      yield {k: v[:chunk_rows] for k, v in merged.items()}
      rest = {k: v[chunk_rows:] for k, v in merged.items()}
      have -= chunk_rows
      buf = [rest] if have else []
  if have:
    yield {k: np.concatenate([b[k] for b in buf]) for k in buf[0]}


class Spill:
  """Pass-1 parsed chunks of each split, so raw text is parsed only once.

  Chunks stay in memory up to `memory_bytes` in total; beyond that they go to .npz files
  in `directory`, which keeps preparation of larger-than-RAM files bounded in memory.
  """

  def __init__(self, directory: str, memory_bytes: int = 1 << 30):
    self.directory = directory
    self.memory_bytes = memory_bytes
    self.held = 0
    self.files: dict[str, list[str | dict[str, np.ndarray]]] = {}

  def add(self, split: str, **arrays: np.ndarray) -> None:
    files = self.files.setdefault(split, [])
    size = sum(a.nbytes for a in arrays.values())
    if self.held + size <= self.memory_bytes:
      self.held += size
      files.append(arrays)
      return
    os.makedirs(self.directory, exist_ok=True)
    path = os.path.join(self.directory, f"{split}-{len(files):06d}.npz")
    np.savez(path, **arrays)
    files.append(path)

  def read(self, split: str, delete: bool = True) -> Iterator[dict[str, np.ndarray]]:
    for i in range(self.num_chunks(split)):
      out = self.load(split, i)
      if delete:
        self.release(split, i)
      yield out

  def num_chunks(self, split: str) -> int:
    return len(self.files.get(split, []))

  def load(self, split: str, i: int) -> dict[str, np.ndarray]:
    """Chunk `i` of `split` (it must not have been released)."""
    item = self.files[split][i]
    if isinstance(item, dict):
      return item
    with np.load(item) as z:
      return {k: z[k] for k in z.files}

  def release(self, split: str, i: int) -> None:
    """Frees chunk `i` of `split` (memory or its file) once it has been consumed."""
    item = self.files[split][i]
    if isinstance(item, str):
      os.remove(item)
    self.files[split][i] = None

  def finish(self, split: str) -> None:
    """Marks a split as consumed; the scratch folder goes once all splits are."""
    self.files[split] = []
    if not any(self.files.values()):
      self.cleanup()

  def cleanup(self) -> None:
    shutil.rmtree(self.directory, ignore_errors=True)


class SplitSource:
  """Random access to the columnar chunks of one split."""

  chunk_rows: int
  num_rows: int

  @property
  def num_chunks(self) -> int:
    return (self.num_rows + self.chunk_rows - 1) // self.chunk_rows

  def __len__(self) -> int:
    return self.num_rows

  def chunk_len(self, i: int) -> int:
    return min(self.chunk_rows, self.num_rows - i * self.chunk_rows)

  def chunk(self, i: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def chunks(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    return [self.chunk(int(i)) for i in indices]

  def read_all(self, workers: int = 1) -> dict[str, np.ndarray]:
    """All rows as contiguous arrays, preallocated and filled by `workers` threads.

    Record reads and array copies release the GIL, so threads can overlap I/O and decoding
    (one is the default: on a busy 2-core host a second thread measured no faster).
    """
    if self.num_chunks == 0:
      raise ValueError("split is empty")
    first = self.chunk(0)
    out = {k: np.empty((self.num_rows,) + v.shape[1:], v.dtype) for k, v in first.items()}
    step = 8

    def fill(lo: int) -> None:
      idx = list(range(lo, min(lo + step, self.num_chunks)))
      for i, c in zip(idx, self.chunks(idx), strict=True):
        a = i * self.chunk_rows
        for k, v in c.items():
          out[k][a : a + len(v)] = v

    with concurrent.futures.ThreadPoolExecutor(max(workers, 1)) as pool:
      list(pool.map(fill, range(0, self.num_chunks, step)))  # list(): re-raises worker errors
    return out


class ArraySplit(SplitSource):
  """A split held in memory as arrays."""

  def __init__(self, arrays: dict[str, np.ndarray], chunk_rows: int = 8192):
    self.arrays = arrays
    self.chunk_rows = chunk_rows
    self.num_rows = len(arrays["label"])

  def chunk(self, i: int) -> dict[str, np.ndarray]:
    lo = i * self.chunk_rows
    return {k: v[lo : lo + self.chunk_rows] for k, v in self.arrays.items()}

  def read_all(self, workers: int = 1) -> dict[str, np.ndarray]:
    del workers  # already in memory
    return self.arrays


class ArrayRecordSplit(SplitSource):
  """A split stored as TFDS array_record records of columnar chunks.

  `files` lists (path, records) of the split's files in record order, so that a failed
  read (a corrupt or vanished file) names the file.
  """

  def __init__(
    self, data_source, num_rows: int, chunk_rows: int, files: Sequence[tuple[str, int]] = ()
  ):
    self.data_source = data_source
    self.num_rows = num_rows
    self.chunk_rows = chunk_rows
    self.files = list(files)
    if len(data_source) != self.num_chunks:
      raise ValueError(f"split has {len(data_source)} records, expected {self.num_chunks} chunks")

  def _fix(self, c) -> dict[str, np.ndarray]:
    c = dict(c)
    if "num" not in c:  # datasets without numeric features store no `num` column
      c["num"] = np.zeros((len(c["label"]), 0), np.float32)
    return c

  def _file_of(self, record: int) -> str:
    for path, n in self.files:
      if record < n:
        return path
      record -= n
    return "<file not known>"

  def chunk(self, i: int) -> dict[str, np.ndarray]:
    return self.chunks([i])[0]

  def chunks(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    ids = [int(i) for i in indices]
    try:
      # __getitems__ reads several records in one array_record call.
      records = self.data_source.__getitems__(ids)
    except Exception as e:  # array_record and TFDS decoding raise assorted types
      files = ", ".join(sorted({self._file_of(i) for i in ids}))
      raise DataError(f"cannot read records {ids} of {files}: {e}") from e
    return [self._fix(c) for c in records]
