"""Vocabularies, numeric statistics, DatasetInfo JSON and the Encoder."""

import numpy as np
import pytest

from jaxctr.data import preprocess
from jaxctr.embeddings.specs import CATEGORICAL, NUMERIC


def test_counter_merges_across_chunks():
  c = preprocess._Counter()
  rng = np.random.default_rng(0)
  chunks = [rng.integers(0, 5000, 3000) for _ in range(40)]
  for x in chunks:
    c.add(x)
  keys, counts = c.result()
  ref_keys, ref_counts = np.unique(np.concatenate(chunks), return_counts=True)
  np.testing.assert_array_equal(keys, ref_keys)
  np.testing.assert_array_equal(counts, ref_counts)


def test_vocabulary_min_count_order_and_oov():
  keys = np.array([10, 20, 30, 40, -1])
  counts = np.array([5, 1, 7, 5, 3])
  v = preprocess.build_vocabulary(keys, counts, min_count=3)
  assert v.size == 5  # 4 kept ids + OOV
  # Descending count, ties by key: 30 (7) -> 1, 10 (5) -> 2, 40 (5) -> 3, -1 (3) -> 4.
  np.testing.assert_array_equal(v.encode(np.array([30, 10, 40, -1])), [1, 2, 3, 4])
  # Rare (20) and unseen (99, 0) keys map to OOV 0.
  np.testing.assert_array_equal(v.encode(np.array([20, 99, 0, -5])), [0, 0, 0, 0])
  empty = preprocess.build_vocabulary(keys, counts, min_count=100)
  assert empty.size == 1 and (empty.encode(keys) == 0).all()


def test_numeric_stats_and_sample_quantiles():
  rng = np.random.default_rng(1)
  x = np.floor(np.exp(rng.normal(2, 1, size=(50_000, 2))))
  x[rng.random(x.shape) < 0.1] = np.nan
  s = preprocess.StatsCollector(1, 2, seed=0)
  for lo in range(0, len(x), 7000):
    s.update(np.zeros((len(x[lo : lo + 7000]), 1), np.int64), x[lo : lo + 7000])
  st = s.numeric_stats(("a", "b"))
  for j, d in enumerate(st):
    col = x[:, j][~np.isnan(x[:, j])]
    assert d["count"] == len(col) and d["missing"] == np.isnan(x[:, j]).sum()
    assert d["min"] == col.min() and d["max"] == col.max()
    assert d["mean"] == pytest.approx(col.mean(), rel=1e-9)
    assert d["std"] == pytest.approx(col.std(), rel=1e-6)
    assert d["log1p_mean"] == pytest.approx(np.log1p(col).mean(), rel=1e-9)
    assert d["log1p_std"] == pytest.approx(np.log1p(col).std(), rel=1e-6)
    assert d["quantiles"]["p50"] == pytest.approx(np.median(col), rel=0.1)
  assert len(s._sample[0]) == preprocess.SAMPLE_SIZE


def _info(fill="zero", transform="log1p_standardize"):
  vocabs = [preprocess.build_vocabulary(np.array([5, 7]), np.array([3, 4]), 1)]
  stats = ({"mean": 4.0, "log1p_mean": 1.0, "log1p_std": 2.0},)
  return preprocess.DatasetInfo(
    name="t",
    features=preprocess.make_features(("C1",), vocabs, ("I1",)),
    num_examples={"train": 2},
    numeric_stats=stats,
    preprocess={"min_count": 1, "numeric_fill": fill, "numeric_transform": transform},
    source_format="criteo",
  ), vocabs


def test_encoder_transform_and_fill():
  info, vocabs = _info()
  enc = preprocess.Encoder(info, vocabs)
  cat, num = enc.encode(np.array([[7], [5], [9]]), np.array([[np.e - 1], [np.nan], [-(np.e - 1)]]))
  np.testing.assert_array_equal(cat[:, 0], [1, 2, 0])
  np.testing.assert_allclose(num[:, 0], [0.0, -0.5, -1.0], rtol=1e-6)
  info, vocabs = _info(fill="mean", transform="none")
  _, num = preprocess.Encoder(info, vocabs).encode(np.array([[7]]), np.array([[np.nan]]))
  assert num[0, 0] == 4.0


def test_info_json_round_trip_and_encoder_save(tmp_path):
  info, vocabs = _info()
  info = preprocess.DatasetInfo(**{**info.__dict__, "oracle_auc": {"train": 0.8}})
  again = preprocess.DatasetInfo.from_json(info.to_json())
  assert again == info
  assert [f.kind for f in again.features] == [CATEGORICAL, NUMERIC]
  assert again.features[0].vocab_size == 3
  preprocess.Encoder(info, vocabs).save(str(tmp_path))
  enc = preprocess.Encoder.load(str(tmp_path))
  assert enc.info == info
  np.testing.assert_array_equal(enc.vocabs[0].keys, vocabs[0].keys)


def test_config_validation():
  with pytest.raises(ValueError, match="numeric_fill"):
    preprocess.PreprocessConfig(numeric_fill="median")


def test_vocabulary_hash_lookup_matches_binary_search():
  rng = np.random.default_rng(3)
  keys = np.unique(rng.integers(-1, 2**62, 50_000))
  v = preprocess.build_vocabulary(keys, rng.integers(1, 6, len(keys)), min_count=3)
  q = np.concatenate([keys, rng.integers(-3, 2**62, 5000), [np.iinfo(np.int64).max]])
  pos = np.minimum(np.searchsorted(v.keys, q), len(v.keys) - 1)
  ref = np.where(v.keys[pos] == q, v.ids[pos], 0)
  np.testing.assert_array_equal(v.encode(q), ref)
  assert sorted(v.encode(v.keys)) == list(range(1, v.size))  # ids are exactly 1..V
