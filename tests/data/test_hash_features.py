"""Vocabulary-free (`hash`) features: the pinned hash, sketches, preparation and training."""

import subprocess
import sys

import numpy as np
import pytest

from jaxctr import configs, train
from jaxctr.data import builders, feature_hash, preprocess, sketch
from jaxctr.data.preprocess import Encoder

FH = feature_hash.ID_BASE


def test_hash_known_values():
  # Pinned: serving and stored data depend on these exact values.
  np.testing.assert_array_equal(
    feature_hash.hash_ids(np.array([0, 1, -1, 0x68FD1E64]), "C1"),
    [6069119984646620786, 6107113357027425216, 7648784473766563004, 5939097329385249478],
  )
  np.testing.assert_array_equal(
    feature_hash.hash_ids(["a", b"68fd1e64"], "C1"), [9138054145225182927, 8155745278623714478]
  )
  assert feature_hash.hash_ids(np.array([0]), "C2")[0] == 8702008031987812935
  assert feature_hash.fnv1a64(b"a") == 0xAF63DC4C8601EC8C  # the FNV-1a reference vector
  ids = feature_hash.hash_ids(np.arange(-5, 100_000, dtype=np.int64), "C7")
  assert ids.dtype == np.int64 and (ids >= FH).all() and len(np.unique(ids)) == len(ids)
  # Same tokens, same ids, whatever the integer dtype.
  np.testing.assert_array_equal(
    feature_hash.hash_ids(np.arange(5, dtype=np.int32), "C7"), ids[5:10]
  )


def test_feature_hash_imports_without_training_stack():
  code = (
    "import sys, jaxctr.data.feature_hash; "
    "bad = [m for m in ('jax', 'tensorflow_datasets', 'flax') if m in sys.modules]; "
    "assert not bad, bad"
  )
  subprocess.run([sys.executable, "-c", code], check=True)


def test_sketches_find_hot_ids_and_count_distinct():
  rng = np.random.default_rng(0)
  ids = rng.zipf(1.2, 400_000)
  hot, dc = sketch.HotSet(100, width=1 << 14), sketch.DistinctCount(k=512)
  for lo in range(0, len(ids), 50_000):
    hot.add(ids[lo : lo + 50_000])
    dc.add(ids[lo : lo + 50_000])
  top, _ = hot.ranked(50)
  u, c = np.unique(ids, return_counts=True)
  true = u[np.argsort(-c, kind="stable")][:50]
  assert len(set(top.tolist()) & set(true.tolist())) >= 48
  assert abs(dc.estimate() / len(u) - 1) < 0.15
  assert len(hot.candidates) <= 100


def _prepare(tmp_path, **overrides):
  return builders.load_dataset(
    "synthetic_ctr", str(tmp_path), builder_kwargs={"config": "tiny"}, overrides=overrides
  )


def test_hash_preparation_skips_vocabulary_and_encodes_like_serving(tmp_path, monkeypatch):
  counted = []
  add = preprocess._Counter.add
  monkeypatch.setattr(preprocess._Counter, "add", lambda self, v: counted.append(add(self, v)))
  ds = _prepare(tmp_path, hash_features=("C1", "C2"), hash_hot_ids=4, min_count=2)
  # min_count=2 makes the other 24 features count a vocabulary; the hashed ones never do.
  assert len(counted) == 24  # one generated block of 20k training rows
  c = ds.split("train").chunk(0)
  assert c["cat"].dtype == np.int64
  col = c["cat"][:, 0]
  hot = col[col < FH]
  assert set(hot.tolist()) <= {1, 2, 3, 4} and (col[col >= FH] < 2 * FH).all()
  # The hot ids are the most frequent training tokens, numbered by frequency.
  vals, cnt = np.unique(col, return_counts=True)
  assert list(vals[np.argsort(-cnt)][:4]) == [1, 2, 3, 4]
  # Serving: a fresh Encoder from disk encodes raw keys as preparation did, and an unseen
  # token gets its own hashed id (no OOV collapse).
  enc = Encoder.load(ds.data_dir)
  top_c3 = int(enc.vocabs[2].keys[enc.vocabs[2].ids == 1][0])  # C3's most frequent key
  raw = np.array([[10**9 + 7, 3, top_c3] + [1] * 23, [10**9 + 8, 3, 10**9] + [1] * 23])
  cat, _ = enc.encode(raw, np.zeros((2, 13)))
  assert cat.dtype == np.int64
  np.testing.assert_array_equal(cat[:, 0], feature_hash.hash_ids(raw[:, 0], "C1"))
  assert cat[0, 0] != cat[1, 0] and cat[0, 1] == cat[1, 1]
  assert cat[0, 2] == 1 and cat[1, 2] == 0  # a vocabulary feature: its top id, and OOV
  # Bucketed tables size from the distinct-count sketch (C1 has at most 2 x vocab ids).
  assert 4 < ds.info.features[0].vocab_size < 10_000


def test_unknown_hash_feature_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="hash_features.*'C99'"):
    _prepare(tmp_path, hash_features=("C99",))


def test_every_method_trains_on_hashed_ids(tmp_path):
  # One run: the four most informative... features hashed, one per method; the rest full.
  c = configs.base_config()
  c.dataset.data_dir = str(tmp_path / "tfds")
  c.dataset.builder_kwargs = {"config": "tiny"}
  c.dataset.hash_features = "C1,C2,C3,C4"
  c.dataset.hash_hot_ids = 16
  c.model = "fm"
  c.embed_dim = 8
  c.embedding.per_feature = {
    "C1": {"method": "hashing", "num_buckets": 256},
    "C2": {"method": "double_hashing", "num_buckets": 128, "hot_ids": 16},
    "C3": {"method": "qr", "num_buckets": 32},
    "C4": {"method": "dhe"},
  }
  c.embedding.dhe_k = 64
  c.embedding.dhe_hidden = (32,)
  c.embedding.learning_rate = 0.02
  c.optimizer.learning_rate = 0.01
  c.batch_size = 512
  c.eval_batch_size = 4096
  c.total_steps = 50
  c.eval_every_steps = 50
  c.log_every_steps = 50
  c.progress_bar = False
  c.num_devices = 1
  out = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert out["test_auc"] > 0.62, out["test_auc"]
