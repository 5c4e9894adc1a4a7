"""Configs that cannot fit are refused before training, with the numbers."""

import pytest

from jaxctr import bounds, configs, train

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
