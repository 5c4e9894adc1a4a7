"""Criteo 1TB layout: 24 day files (one gzipped), MLPerf's day-23 split and table row cap."""

import gzip
import math
import os
import shutil

import numpy as np
import pytest

from jaxctr import configs, train
from jaxctr.data import builders, parsers

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "criteo_1tb")


def _rows(day):
  name = os.path.join(FIXTURE, f"day_{day}")
  with gzip.open(name + ".gz") if day == 7 else open(name, "rb") as fh:
    return [ln.split(b"\t") for ln in fh.read().splitlines()]


def _load(tmp_path, **overrides):
  return builders.load_dataset(
    "criteo_1tb", str(tmp_path / "tfds"), manual_dir=FIXTURE, overrides=overrides
  )


def test_days_split_as_mlperf_and_vocabulary(tmp_path):
  ds = _load(tmp_path, min_count=1, chunk_rows=64)
  last = _rows(23)
  n_test = math.ceil(len(last) / 2)
  assert ds.info.num_examples == {
    "train": sum(len(_rows(d)) for d in range(23)),  # day_7.gz included
    "valid": len(last) - n_test,
    "test": n_test,
  }
  # Test is the first half of day 23, validation the rest, in file order.
  test = ds.split("test").read_all()
  valid = ds.split("valid").read_all()
  np.testing.assert_array_equal(test["label"], [float(r[0]) for r in last[:n_test]])
  np.testing.assert_array_equal(valid["label"], [float(r[0]) for r in last[n_test:]])
  # A frequency vocabulary: ids 1..V for training tokens, OOV 0 for tokens new on day 23.
  assert ds.info.features[0].vocab_size > 2
  train_c1 = {r[14] for d in range(23) for r in _rows(d)}
  unseen = [i for i, r in enumerate(last[:n_test]) if r[14] not in train_c1]
  assert unseen and (test["cat"][unseen, 0] == 0).all() and (test["cat"][:, 0] >= 0).all()


def test_row_cap_is_raw_value_modulo_rows(tmp_path):
  ds = _load(tmp_path, max_table_rows=50)
  assert all(f.vocab_size == 50 for f in ds.info.categorical)
  cat = ds.split("train").read_all()["cat"]
  rows = [r for d in range(23) for r in _rows(d)]
  want = np.array([[int(t, 16) % 50 if t else 0 for t in r[14:40]] for r in rows])
  np.testing.assert_array_equal(cat, want)


def test_missing_day_names_the_file(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(FIXTURE, manual)
  os.remove(manual / "day_12")
  with pytest.raises(parsers.DataError, match="day_12"):
    builders.load_dataset("criteo_1tb", str(tmp_path / "tfds"), manual_dir=str(manual))


def test_prepares_and_trains_end_to_end(tmp_path):
  c = configs.base_config()
  c.dataset.name = "criteo_1tb"
  c.dataset.data_dir = str(tmp_path / "tfds")
  c.dataset.manual_dir = FIXTURE
  c.dataset.max_table_rows = 64
  c.dataset.streaming = True
  c.model = "fm"
  c.embed_dim = 4
  c.batch_size = 64
  c.eval_batch_size = 64
  c.total_steps = 6
  c.eval_every_steps = 6
  c.log_every_steps = 6
  c.progress_bar = False
  c.num_devices = 1
  out = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert out["step"] == 6 and np.isfinite(out["test_auc"])
