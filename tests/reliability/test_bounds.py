"""Configs that cannot fit are refused before training, with the numbers."""

import pytest

from jaxctr import bounds, configs, train
from jaxctr.embeddings import planner

GiB = 1 << 30


class _Device:
  platform = "gpu"

  def __init__(self, limit):
    self.limit = limit

  def memory_stats(self):
    return {"bytes_limit": self.limit}

  def __str__(self):
    return "gpu:0"


def test_host_and_device_limits_with_numbers():
  cpu = [type("D", (), {"platform": "cpu"})()] * 2
  with pytest.raises(bounds.ResourceError, match=r"needs at least 12\.00 GiB.*1\.00 GiB is avail"):
    bounds.check_fits([5 * GiB, 5 * GiB], cpu, 2 * GiB, host_bytes=GiB)
  bounds.check_fits([GiB // 4, GiB // 4], cpu, GiB // 4, host_bytes=GiB)  # fits: no error
  with pytest.raises(bounds.ResourceError, match=r"gpu:0 needs at least 3\.00 GiB.*has 2\.00"):
    bounds.check_fits([3 * GiB], [_Device(2 * GiB)], 0)
  assert bounds.batch_bytes(configs.base_config(), 26, 13) == 4 * 40 * 4096 * 4


def test_oversized_tables_refused_before_allocation(tmp_path):
  c = configs.base_config()
  c.dataset.data_dir = str(tmp_path)
  c.dataset.builder_kwargs = {"config": "tiny"}
  c.model = "fm"
  c.num_devices = 1
  c.embedding.method = "hashing"
  c.embedding.num_buckets = 1 << 36  # 26 tables of 2^36 rows: terabytes
  with pytest.raises(bounds.ResourceError, match=r"needs at least \d+\.\d+ GiB of host memory"):
    train.train_and_evaluate(c, str(tmp_path / "wd"))


def _offload_config(tmp_path, rows, **kw):
  """FM on the tiny synthetic data, every table hashed to `rows` rows and offloaded."""
  from tests.common import override

  c = configs.base_config()
  c.dataset.data_dir = str(tmp_path / "tfds")
  c.dataset.builder_kwargs = {"config": "tiny"}
  c.model = "fm"
  c.num_devices = 1
  c.embedding.method = "hashing"
  c.embedding.num_buckets = rows
  c.offload.enabled = True
  return override(c, kw)


def test_offloaded_host_store_beyond_host_memory_refused_before_allocation(tmp_path):
  # 26 tables of 2^34 rows, with Adam slots: terabytes of host store, nothing allocated.
  c = _offload_config(tmp_path, 1 << 34, **{"offload.cache_rows": 1024})
  with pytest.raises(
    bounds.ResourceError,
    match=r"host stores of 26 offloaded table\(s\).*largest \w+: 17,179,869,184 rows x \d+ "
    r"bytes = \d+\.\d+ GiB\) need \d+\.\d+ GiB of host memory.*GiB is available.*disk_dir",
  ):
    train.train_and_evaluate(c, str(tmp_path / "wd"))


def test_offloaded_host_store_beyond_disk_refused_with_the_directory(tmp_path):
  disk_dir = tmp_path / "not" / "yet" / "there"  # measured on the disk it will be created on
  c = _offload_config(tmp_path, 1 << 34, **{"offload.disk_dir": str(disk_dir)})
  with pytest.raises(
    bounds.ResourceError,
    match=rf"need \d+\.\d+ GiB \(\d+\.\d+ GiB with a checkpoint's copy\) in "
    rf"config\.offload\.disk_dir={disk_dir} but \d+\.\d+ GiB is free",
  ):
    train.train_and_evaluate(c, str(tmp_path / "wd"))
  assert not disk_dir.exists()  # refused before any store file was created


def test_host_store_check_counts_stores_caches_and_disk():
  cost = planner.TableCost("big", rows=1 << 20, dim=16, dtype="float32", optimizer="adam",
                           row_bytes=3 * 64)  # fmt: skip
  small = planner.TableCost("small", 100, 16, "float32", "adam", 3 * 64)
  costs = [cost, small]
  plan = planner.plan(costs, 1, pins={"big": planner.OFFLOAD})
  cpu = [type("D", (), {"platform": "cpu"})()]
  ram = configs.base_config().offload
  store = cost.bytes  # 192 MiB; the small table stays on the device
  bounds.check_host_stores(plan, ram, cpu, host_bytes=store + sum(plan.per_device))  # fits
  with pytest.raises(bounds.ResourceError, match=r"need 0\.19 GiB of host memory \(and the CPU"):
    bounds.check_host_stores(plan, ram, cpu, host_bytes=store + sum(plan.per_device) - 1)
  # On an accelerator the caches are in device memory: only the stores count against the host.
  bounds.check_host_stores(plan, ram, [_Device(GiB)], host_bytes=store)
  with pytest.raises(bounds.ResourceError, match=r"need 0\.19 GiB of host memory but"):
    bounds.check_host_stores(plan, ram, [_Device(GiB)], host_bytes=store - 1)
  on_disk = configs.base_config().offload
  on_disk.disk_dir = "/somewhere"
  # On disk (RAM not used), with room for a checkpoint's copy of the stores beside them.
  bounds.check_host_stores(plan, on_disk, cpu, host_bytes=0, disk_bytes=2 * store)
  with pytest.raises(
    bounds.ResourceError, match=r"\(0\.38 GiB with a checkpoint's copy\).*but 0\.37 GiB is free"
  ):
    bounds.check_host_stores(plan, on_disk, cpu, disk_bytes=2 * store - 1)
  bounds.check_host_stores(plan, on_disk, cpu, disk_bytes=store, checkpoints=False)
  with pytest.raises(bounds.ResourceError, match=r"disk_dir=/somewhere but 0\.18 GiB is free"):
    bounds.check_host_stores(plan, on_disk, cpu, disk_bytes=store - (10 << 20), checkpoints=False)
  # No offloaded table: nothing to check.
  bounds.check_host_stores(planner.plan(costs, 1), ram, cpu, host_bytes=0)


def test_offload_cache_beyond_device_memory_refused():
  # The device cache counts in the plan's per-device bytes: a cache that cannot fit the
  # accelerator is refused by `check_fits` with the numbers.
  cost = planner.TableCost("big", 1 << 28, 16, "float32", "adam", 3 * 64)
  plan = planner.plan([cost], 1, pins={"big": planner.OFFLOAD}, cache=planner.CacheSpec(0.5))
  assert plan.per_device[0] >= (1 << 27) * 3 * 64  # half the rows as cache slots: 24 GiB
  with pytest.raises(bounds.ResourceError, match=r"gpu:0 needs at least 24\.\d\d GiB.*has 16\.00"):
    bounds.check_fits(plan.per_device, [_Device(16 * GiB)], 0)
