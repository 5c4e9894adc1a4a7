"""A full disk stops an offloaded run at once, with numbers (never a SIGBUS mid-step)."""

import errno
import os

import pytest

from jaxctr import disk


def test_reserve_allocates_and_refuses_with_numbers(tmp_path, monkeypatch):
  path = str(tmp_path / "t.npy")
  with open(path, "wb") as fh:
    fh.truncate(1 << 20)  # sparse, like a fresh memmap file
  disk.reserve(path, 1 << 20, "config.offload.disk_dir")
  assert os.stat(path).st_blocks * 512 >= 1 << 20  # the blocks exist now
  too_big = disk.free_bytes(str(tmp_path)) + (4 << 30)
  with pytest.raises(disk.DiskSpaceError, match=r"t\.npy needs \d+\.\d+ GiB but \d+\.\d+ GiB"):
    disk.reserve(path, too_big, "config.offload.disk_dir")

  def full(fd, offset, length):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(os, "posix_fallocate", full)
  with pytest.raises(disk.DiskSpaceError, match="No space left on device"):
    disk.reserve(path, 2 << 20)


def test_offload_disk_tier_out_of_space_stops_at_creation(tmp_path, monkeypatch):
  import jax

  from jaxctr.embeddings import host_store
  from jaxctr.embeddings.collection import EmbeddingCollection
  from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec

  opt = OptimizerSpec("adagrad", learning_rate=0.1)
  c = EmbeddingCollection(
    [FeatureSpec("a", "categorical", 5000)],
    [TableSpec("a", 5000, 8, optimizer=opt)],
    groups={"a": "offload"},
  )
  stack = c.stacks[0]
  store = host_store.HostStore(stack, jax.random.key(0), str(tmp_path / "ok"))
  for name in store.arrays:
    path = tmp_path / "ok" / f"{stack.name.replace('/', '_')}.{name}.npy"
    assert os.stat(path).st_blocks * 512 >= os.path.getsize(path)  # no holes to SIGBUS on
  monkeypatch.setattr(disk, "free_bytes", lambda d: 1000)  # a nearly full disk
  with pytest.raises(disk.DiskSpaceError, match=r"config\.offload\.disk_dir: .* needs"):
    host_store.HostStore(stack, jax.random.key(0), str(tmp_path / "full"))
