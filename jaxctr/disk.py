"""Disk space for memory-mapped files, reserved up front.

A write into a memory-mapped file whose blocks the file system cannot supply (disk full,
quota) is not an error but a SIGBUS that kills the process, possibly in the middle of a
step. `reserve` therefore checks the free space and allocates every block of the file
when it is created (`posix_fallocate`), so a full disk stops the run at once with a
`DiskSpaceError` naming the file, the bytes needed and the bytes free.
"""

from __future__ import annotations

import errno
import os

GiB = float(1 << 30)


class DiskSpaceError(OSError):
  """Not enough disk space for a file that must not run out of it."""


def free_bytes(directory: str) -> int:
  st = os.statvfs(directory)
  return st.f_bavail * st.f_frsize


def reserve(path: str, nbytes: int, what: str = "") -> None:
  """Allocates the first `nbytes` of the existing file `path`, or raises `DiskSpaceError`."""
  label = f"{what}: " if what else ""
  # Blocks already allocated (a fresh memmap file is sparse: its size allocates nothing).
  have = os.stat(path).st_blocks * 512 if os.path.exists(path) else 0
  free = free_bytes(os.path.dirname(os.path.abspath(path)))
  if nbytes - have > free:
    raise DiskSpaceError(
      errno.ENOSPC,
      f"{label}{path} needs {nbytes / GiB:.3f} GiB but {free / GiB:.3f} GiB is free on its disk",
    )
  if not hasattr(os, "posix_fallocate"):  # macOS: the check above is all there is
    return
  fd = os.open(path, os.O_RDWR)
  try:
    os.posix_fallocate(fd, 0, nbytes)
  except OSError as e:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
      raise DiskSpaceError(
        e.errno, f"{label}{path}: cannot reserve {nbytes / GiB:.3f} GiB ({e.strerror})"
      ) from e
    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # e.g. tmpfs quirks: best effort
      raise
  finally:
    os.close(fd)
