"""Host store of an offloaded stack: every row of its table and optimizer slots on the host.

Rows live in numpy arrays, or in `np.memmap` files for tables larger than RAM. They are
initialised chunk by chunk with the counter-based random bits `EmbeddingCollection.init`
draws, so the values are bit-identical to an on-device table's without the whole table ever
being materialised on the device.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p

from jaxctr import disk
from jaxctr.embeddings import collection as coll_lib
from jaxctr.embeddings import optimizers, quantization

_CHUNK_ELEMENTS = 1 << 24  # elements generated per init call: 64 MiB of fp32
SNAPSHOT_CHUNK_BYTES = 64 << 20  # bytes copied at a time into a checkpoint snapshot


@functools.partial(jax.jit, static_argnums=(2, 3))
def _normal_rows(key, start, n: int, dim: int, mean, std):
  """Rows ``[r, r + n)`` of ``mean + std * jax.random.normal(key, (rows, dim))``.

  ``start`` is the flat index ``r * dim`` as (hi, lo) uint32. Partitionable
  threefry draws element i from the counter i, so a block of rows can be drawn
  alone; the float conversion below is `jax.random.normal`'s. Tested
  bit-identical against `EmbeddingCollection.init`.
  """
  k1, k2 = jax.random.key_data(key)
  lo = start[1] + jnp.arange(n * dim, dtype=jnp.uint32)
  hi = start[0] + (lo < start[1]).astype(jnp.uint32)
  b1, b2 = threefry2x32_p.bind(k1, k2, hi, lo)
  fbits = jax.lax.shift_right_logical(b1 ^ b2, jnp.uint32(9)) | jnp.uint32(0x3F800000)
  floats = jax.lax.bitcast_convert_type(fbits, jnp.float32) - jnp.float32(1.0)
  low = np.nextafter(np.float32(-1.0), np.float32(0.0))
  u = jax.lax.max(jnp.float32(low), floats * (jnp.float32(1.0) - low) + low)
  normal = (np.float32(np.sqrt(2)) * jax.lax.erf_inv(u)).reshape(n, dim)
  return mean + std * normal


def _entry_layout(s: coll_lib.Stack) -> dict[str, tuple[int, np.dtype]]:
  """{array name: (width, dtype)} of a stack's stored arrays and slots."""
  if quantization.is_int(s.dtype):
    probe = jax.eval_shape(lambda: quantization.store(jnp.zeros((1, s.dim)), s.dtype, None))
    out = {k: (v.shape[1], np.dtype(v.dtype)) for k, v in probe.items()}
  else:
    out = {"table": (s.dim, np.dtype(jnp.dtype(s.dtype)))}
  for slot in optimizers.get(s.optimizer).slots:
    out[slot.name] = (1 if slot.per_row else s.dim, np.dtype(np.float32))
  return out


class HostStore:
  """Every row of one stack (table and optimizer slots) in host RAM or memory-mapped files."""

  def __init__(self, stack: coll_lib.Stack, key: jax.Array, disk_dir: str = ""):
    self.stack = stack
    self.disk_dir = disk_dir
    self.layout = _entry_layout(stack)
    self.arrays: dict[str, np.ndarray] = {}
    for name, (width, dtype) in self.layout.items():
      shape = (stack.rows, width)
      if disk_dir:
        os.makedirs(disk_dir, exist_ok=True)
        path = os.path.join(disk_dir, f"{stack.name.replace('/', '_')}.{name}.npy")
        self.arrays[name] = np.lib.format.open_memmap(path, "w+", dtype, shape)
        # A full disk would otherwise be a SIGBUS at some later write (jaxctr/disk.py).
        disk.reserve(path, os.path.getsize(path), "config.offload.disk_dir")
      else:
        self.arrays[name] = np.empty(shape, dtype)
    self.row_bytes = sum(w * d.itemsize for w, d in self.layout.values())
    self._init(key)

  def _init(self, key: jax.Array) -> None:
    s = self.stack
    step = max(1, _CHUNK_ELEMENTS // s.dim)
    for t, off in zip(s.tables, s.offsets, strict=True):
      tkey = coll_lib.table_key(key, t.name)
      for r in range(0, t.vocab_size, step):
        n = min(step, t.vocab_size - r)
        flat = r * s.dim
        start = jnp.array([flat >> 32, flat & 0xFFFFFFFF], jnp.uint32)
        rows = _normal_rows(
          tkey, start, n, s.dim, jnp.float32(t.init_mean), jnp.float32(t.init_std)
        )
        if quantization.is_int(s.dtype):
          parts = quantization.store(rows, s.dtype, None)
        else:
          parts = {"table": rows.astype(s.dtype)}
        for name, v in parts.items():
          self.arrays[name][off + r : off + r + n] = np.asarray(v)
    for slot in optimizers.get(s.optimizer).slots:
      self.arrays[slot.name][:] = slot.init(s.optimizer)

  def snapshot(self) -> dict[str, np.ndarray]:
    """A copy of every array that training's later writes leave alone (async checkpoints).

    A store in RAM is copied. A memory-mapped one (a table larger than RAM) is copied in
    row chunks of `SNAPSHOT_CHUNK_BYTES` into a file beside it, which is unlinked at once:
    the copy costs disk, not memory, and its blocks are freed when the checkpoint writer
    drops the mapping (or the process dies). Its space is reserved first, so a full disk
    is a `disk.DiskSpaceError`, not a SIGBUS while copying.
    """
    if not self.disk_dir:
      return {k: v.copy() for k, v in self.arrays.items()}
    out = {}
    for name, v in self.arrays.items():
      fd, path = tempfile.mkstemp(prefix=f".snapshot-{name}-", suffix=".npy", dir=self.disk_dir)
      os.close(fd)
      try:
        snap = np.lib.format.open_memmap(path, "w+", v.dtype, v.shape)
        disk.reserve(path, os.path.getsize(path), "config.offload.disk_dir (checkpoint copy)")
      finally:
        os.unlink(path)
      step = max(1, SNAPSHOT_CHUNK_BYTES // max(v.strides[0], 1))
      for lo in range(0, len(v), step):
        snap[lo : lo + step] = v[lo : lo + step]
      out[name] = snap
    return out

  def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[rows] for k, v in self.arrays.items()}

  def scatter(self, rows: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
    for k, v in self.arrays.items():
      v[rows] = values[k]
