"""Host-memory policy for steady training steps on XLA:CPU (glibc only).

Why: XLA:CPU gives each execution its temporaries as one buffer. Above glibc's
mmap threshold (at most 32 MiB) malloc maps fresh pages for it and unmaps them
on free, so every step page-faults its whole temporary working set again (tens of
MB and tens of thousands of minor faults per step at the throughput benchmark's
shape; the figures are in ``experiments/README.md``, "Figures behind design choices").

The ``reuse`` policy keeps that memory instead:

1. `share_one_arena` (as early as possible, before XLA's threads first
   allocate): all threads use glibc's main arena. Thread arenas cap a heap at
   64 MiB and fall back to mmap above it, whatever the settings below.
2. `settle` (after a compilation, or any other burst of freed memory):
   ``malloc_trim(0)`` first returns what is free now (the compiler's working
   memory), then large requests are served from the heap (``M_MMAP_MAX=0``)
   and freed memory is kept for the next step (high ``M_TRIM_THRESHOLD``).

Settling *after* the first compilation keeps peak memory where it was: the
compiler's transient memory is returned, and later steps reuse their own
pages. `restore_defaults` undoes step 2 (the trainer does so before evaluating,
whose larger batches would otherwise grow the kept heap). Under the same
policy, `huge_zeros` puts new tables on transparent huge pages. Elsewhere than glibc every function is
a no-op returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

from absl import logging

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_DEFAULT_MMAP_MAX = 65536
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_KEEP_FREED = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of freed memory
# madvise advice (linux/mman.h).
_MADV_DONTNEED = 4
_MADV_HUGEPAGE = 14
_HUGE = 1 << 21  # x86-64 / arm64 transparent huge page
_MIN_HUGE_BYTES = 64 << 20  # smaller arrays gain little

_huge_pages = False  # set by `use_huge_pages`; read by table initialisation

POLICIES = ("reuse", "system")


@functools.cache
def _libc():
  if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc
  except (OSError, AttributeError):  # pragma: no cover - exotic libc builds
    return None


def available() -> bool:
  """Whether this process's allocator can be tuned (Linux with glibc)."""
  return _libc() is not None


def share_one_arena() -> bool:
  """All threads allocate from the main arena (call before XLA's threads start)."""
  libc = _libc()
  return bool(libc and libc.mallopt(_M_ARENA_MAX, 1))


def settle() -> bool:
  """Returns free memory to the OS, then keeps large and freed blocks in the heap."""
  libc = _libc()
  if libc is None:
    return False
  libc.malloc_trim(0)
  ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED)
  return bool(ok)


def restore_defaults() -> bool:
  """Undoes `settle`'s settings (glibc's defaults) and returns free memory."""
  libc = _libc()
  if libc is None:
    return False
  ok = libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX) and libc.mallopt(
    _M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD
  )
  libc.malloc_trim(0)
  return bool(ok)


def use_huge_pages(enabled: bool) -> None:
  """Whether `huge_zeros` advises huge pages (the trainer sets it from its policy)."""
  global _huge_pages
  _huge_pages = bool(enabled)


def huge_zeros(x) -> bool:
  """Backs a freshly made all-zero CPU array with transparent huge pages.

  Embedding rows are read and written at random: with 4 KiB pages nearly every
  row of a multi-GB table costs a TLB miss, with 2 MiB pages few do (measured in
  ``experiments/README.md``, "Figures behind design choices").

  ``x`` must be all zeros (`jnp.zeros`): its pages are dropped
  (``MADV_DONTNEED``, which reads back as zeros) after marking the range
  ``MADV_HUGEPAGE``, so the writes that fill it fault huge pages straight in
  instead of being collapsed later (seconds per GB). A no-op unless enabled, on
  glibc/Linux, for CPU arrays of at least 64 MiB.

  Returns:
    Whether any range was advised.
  """
  libc = _libc()
  if not _huge_pages or libc is None or x.nbytes < _MIN_HUGE_BYTES:
    return False
  done = False
  for shard in x.addressable_shards:
    buf = shard.data
    if buf.devices().pop().platform != "cpu":
      return False
    start = buf.unsafe_buffer_pointer()
    lo = -(-start // _HUGE) * _HUGE  # whole huge pages strictly inside the buffer
    hi = (start + buf.nbytes) // _HUGE * _HUGE
    if hi - lo < _HUGE:
      continue
    buf.block_until_ready()
    if libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_HUGEPAGE) == 0:
      libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_DONTNEED)
      done = True
  return done


class CompileWatch:
  """Calls `settle` after a jitted function's call that compiled something.

  Args:
    fn: A `jax.jit` function; its executable cache is checked after each call.
    enabled: False makes every call a no-op (the ``system`` policy, or no glibc).
  """

  def __init__(self, fn, enabled: bool):
    self._size = getattr(fn, "_cache_size", None)
    self.enabled = enabled and available()
    self._seen = -1

  def release(self) -> None:
    """Returns the kept memory (e.g. before evaluation); the next call settles again."""
    if self.enabled and self._seen != -1:
      restore_defaults()
      self._seen = -1

  def after_call(self) -> None:
    if not self.enabled:
      return
    n = self._size() if self._size is not None else 1  # no cache API: settle once
    if n != self._seen:
      self._seen = n
      settle()
      logging.log_first_n(logging.INFO, "hostmem: settled the host heap after a compile", 3)
