"""Bounded-memory record spool for TFDS preparation of large splits.

TFDS's `GeneratorBasedBuilder` passes every serialized example of a split through its
`Shuffler` before writing shards. Even with `disable_shuffling=True` (our builders: chunk
order is part of the data) the shuffler keeps the whole split in memory up to 1 GB, then
moves it to temporary buckets written with TensorFlow's file API (TensorFlow is not a
dependency here, so larger splits failed) and sorts each bucket in memory to restore key
order. Our generators yield keys 0, 1, 2, ... in order, so nothing needs sorting: `Spool`
appends records to one temporary file and reads them back in order, holding one record at
a time. `ordered_writer()` makes TFDS use it while a builder prepares.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import uuid
from collections.abc import Iterator

from tensorflow_datasets.core import shuffle

_LEN = struct.Struct("<Q")


class Spool:
  """The part of TFDS's `Shuffler` interface its `Writer` uses, for in-order int keys."""

  def __init__(self, dirpath, hash_salt, disable_shuffling: bool = False, **unused):
    del hash_salt, unused
    if not disable_shuffling:
      raise ValueError("Spool keeps key order; it only replaces an unshuffled writer")
    os.makedirs(os.fspath(dirpath), exist_ok=True)
    self._path = os.path.join(os.fspath(dirpath), f"spool_{uuid.uuid4().hex}.tmp")
    self._fh = open(self._path, "wb")  # noqa: SIM115 - closed when iteration starts
    self._next_key = 0
    self.num_examples = 0
    self.size = 0

  @property
  def bucket_lengths(self) -> list[int]:
    return [self.num_examples]

  def add(self, key, data: bytes) -> None:
    if key != self._next_key:
      raise ValueError(f"Spool expects keys 0, 1, 2, ... in order; got {key!r}")
    self._next_key += 1
    self._fh.write(_LEN.pack(len(data)))
    self._fh.write(data)
    self.num_examples += 1
    self.size += len(data)

  def __iter__(self) -> Iterator[tuple[int, bytes]]:
    self._fh.close()
    try:
      with open(self._path, "rb") as fh:
        for key in range(self.num_examples):
          (n,) = _LEN.unpack(fh.read(_LEN.size))
          yield key, fh.read(n)
    finally:
      with contextlib.suppress(FileNotFoundError):
        os.remove(self._path)


@contextlib.contextmanager
def ordered_writer():
  """While active, TFDS writers spool unshuffled splits through `Spool`."""
  original = shuffle.Shuffler

  def make(dirpath, hash_salt, disable_shuffling=False, ignore_duplicates=False):
    if disable_shuffling:
      return Spool(dirpath or tempfile.gettempdir(), hash_salt, disable_shuffling)
    return original(dirpath, hash_salt, disable_shuffling, ignore_duplicates)

  shuffle.Shuffler = make
  try:
    yield
  finally:
    shuffle.Shuffler = original
