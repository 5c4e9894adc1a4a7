"""Embedding methods: hashing, double hashing, QR, low-precision storage, config validation."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxctr import configs, features
from jaxctr.embeddings import hashing, quantization
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import EncoderSpec, FeatureSpec, OptimizerSpec, SpecError, TableSpec


def test_hash_is_stable_across_runs_and_machines():
  # Pinned values: any change to the hash breaks every hashed model in production.
  np.testing.assert_array_equal(
    hashing.hash_keys(np.array([0, 1, -1, 2**40], np.int64)),
    np.array(
      [12035550249420947055, 627405149472732430, 3303439293501059696, 14485895299514490415],
      np.uint64,
    ),
  )
  np.testing.assert_array_equal(
    hashing.hash_keys(["a", "abc"], seed=7),
    np.array([12937615768748818313, 10535662020256763211], np.uint64),
  )
  assert hashing.fnv1a64(b"a") == 0xAF63DC4C8601EC8C  # the published FNV-1a test vector
  # str, bytes and object arrays of the same keys agree; int32 and int64 ids agree.
  np.testing.assert_array_equal(hashing.hash_keys(["x", "yz"]), hashing.hash_keys([b"x", b"yz"]))
  np.testing.assert_array_equal(
    hashing.hash_keys(np.array(["x", "yz"], object)), hashing.hash_keys(["x", "yz"])
  )
  ids = np.arange(-5, 100)
  np.testing.assert_array_equal(
    hashing.hash_keys(ids.astype(np.int32)), hashing.hash_keys(ids.astype(np.int64))
  )


def test_hash_buckets_range_and_uniformity():
  b = hashing.hash_buckets(np.arange(100_000), 100, seed=3)
  assert b.min() == 0 and b.max() == 99
  counts = np.bincount(b, minlength=100)
  assert counts.min() > 850 and counts.max() < 1150  # ~1000 +- 5 sigma
  assert not np.array_equal(b, hashing.hash_buckets(np.arange(100_000), 100, seed=4))


def test_double_hashing_splits_by_frequency():
  ids = np.array([-1, 0, 1, 2, 3, 4, 1000])
  hot, h1, h2 = hashing.double_hash(ids, hot_ids=3, num_buckets=16, seed=0)
  # OOV 0 and ids 1..3 keep their own rows 0..3; padding and ids past 3 are hashed.
  np.testing.assert_array_equal(hot, [-1, 0, 1, 2, 3, -1, -1])
  cold = np.array([False, False, False, False, False, True, True])
  assert (h1[~cold] == -1).all() and (h2[~cold] == -1).all()
  assert ((h1[cold] >= 0) & (h1[cold] < 16)).all() and ((h2[cold] >= 0) & (h2[cold] < 16)).all()
  many = np.arange(4, 20_000)
  _, a, b = hashing.double_hash(many, 3, 1000)
  # Two independent hashes: a pair of ids rarely collides in both.
  pairs = a * 1000 + b
  assert len(np.unique(pairs)) > 0.98 * len(many)


def test_qr_pairs_are_unique_and_reconstruct_ids():
  ids = np.arange(10_007)
  q, r = hashing.quotient_remainder(ids, 101)
  np.testing.assert_array_equal(q * 101 + r, ids)
  assert q.max() < hashing.quotient_rows(10_007, 101) and r.max() < 101
  assert len(set(zip(q.tolist(), r.tolist()))) == len(ids)


def test_stochastic_rounding_is_unbiased():
  key = jax.random.key(0)
  x = jnp.full((200_000,), 1.0 + 2e-4, jnp.float32)  # between two bf16/fp16 neighbours
  for dtype in ("bfloat16", "float16"):
    y = quantization.stochastic_round_float(x, dtype, key).astype(jnp.float32)
    assert len(np.unique(np.asarray(y))) == 2  # rounds to the two neighbours only
    assert float(y.mean()) == pytest.approx(1.0 + 2e-4, abs=5e-5)
    assert float(x.astype(dtype).astype(jnp.float32)[0]) == 1.0  # nearest would lose it
  rows = jax.random.normal(key, (4, 8)) * jnp.array([[1e-3], [1.0], [50.0], [0.0]])
  for dtype in ("int8", "int16"):
    acc = jnp.zeros_like(rows)
    for i in range(400):
      q, s = quantization.quantize_int(rows, dtype, jax.random.key(i + 1))
      acc = acc + quantization.dequantize(q, s)
    step = np.asarray(quantization.row_scale(rows, dtype))
    np.testing.assert_allclose(acc / 400, rows, atol=float(step.max()) * 0.2 + 1e-9)
    q, s = quantization.quantize_int(rows, dtype, None)
    assert q.dtype == jnp.dtype(dtype) and int(jnp.abs(q).max()) == quantization.INT_LEVELS[dtype]


def _collection(method="full", dtype="float32", stack=True, **enc):
  feats = [FeatureSpec("a", "categorical", 1000), FeatureSpec("b", "categorical", 50)]
  opt = OptimizerSpec("sgd", learning_rate=0.1)
  tables = [
    TableSpec("a", 1000, 4, 0.1, opt, dtype, EncoderSpec(method, **enc)),
    TableSpec("b", 50, 4, 0.1, opt, dtype),
  ]
  return EmbeddingCollection(feats, tables, stack_tables=stack)


def _lookup(col, state, cat):
  ids = col.prepare({"cat": cat})
  return col.assemble(col.gather(state, ids), ids), ids


@pytest.mark.parametrize(
  "method,enc,rows",
  [
    ("hashing", {"num_buckets": 64}, 64),
    ("double_hashing", {"num_buckets": 64, "hot_ids": 10}, 75),  # + the OOV row
    ("qr", {"num_buckets": 32}, 32 + 32),
  ],
)
def test_methods_shrink_tables_and_train_through_collection(method, enc, rows):
  col = _collection(method, **enc)
  assert col.num_bytes() == (rows + 50) * 4 * 4
  state = col.init(jax.random.key(0))
  cat = np.array([[1, 3], [999, 0], [500, 49], [1, 3]], np.int32)
  feats, ids = _lookup(col, state, cat)
  assert feats["a"].shape == (4, 4) and feats["b"].shape == (4, 4)
  np.testing.assert_array_equal(feats["a"][0], feats["a"][3])  # same id, same vector
  # One SGD step towards a target moves the combined vector of the touched ids.
  target = jnp.ones((4, 4))

  def loss(rows):
    return jnp.sum((col.assemble(rows, ids)["a"] - target) ** 2)

  rows = col.gather(state, ids)
  before = loss(rows)
  state = col.apply_gradients(state, ids, jax.grad(loss)(rows), jnp.int32(1))
  assert float(loss(col.gather(state, ids))) < float(before)


def test_qr_combines():
  for combine, dim_q in (("mult", 4), ("add", 4), ("concat", 2)):
    col = _collection("qr", num_buckets=10, combine=combine, stack=False)
    state = col.init(jax.random.key(0))
    assert state["a/q"]["table"].shape == (100, dim_q)
    feats, _ = _lookup(col, state, np.array([[37, 1]], np.int32))
    q, r = state["a/q"]["table"][3], state["a/r"]["table"][7]
    want = {"mult": q * r, "add": q + r, "concat": jnp.concatenate([q, r])}[combine]
    np.testing.assert_allclose(feats["a"][0], want, rtol=1e-6)


@pytest.mark.parametrize("dtype,itemsize", [("bfloat16", 2), ("float16", 2), ("int16", 2)])
def test_low_precision_storage_bytes_and_lookup(dtype, itemsize):
  full, low = _collection(), _collection(dtype=dtype)
  extra = 4 if dtype == "int16" else 0  # the per-row scale
  assert low.num_bytes() == 1050 * (4 * itemsize + extra)
  assert full.num_bytes() == 1050 * 16
  s_full, s_low = full.init(jax.random.key(0)), low.init(jax.random.key(0))
  cat = np.array([[5, 7]], np.int32)
  f_full, _ = _lookup(full, s_full, cat)
  f_low, _ = _lookup(low, s_low, cat)
  np.testing.assert_allclose(f_low["a"], f_full["a"], rtol=1e-2, atol=1e-3)


def test_int8_state_has_scale_and_updates():
  col = _collection(dtype="int8")
  state = col.init(jax.random.key(0))
  stack = next(iter(state.values()))
  assert stack["table"].dtype == jnp.int8 and stack["scale"].shape[1] == 1
  cat = np.array([[5, 7]], np.int32)
  feats, ids = _lookup(col, state, cat)
  rows = col.gather(state, ids)
  grads = jax.tree.map(jnp.ones_like, rows)
  new = col.apply_gradients(state, ids, grads, jnp.int32(1))
  after, _ = _lookup(col, new, cat)
  np.testing.assert_allclose(after["a"], feats["a"] - 0.1, atol=0.01)


def _emb_cfg(**kw):
  c = configs.base_config().embedding
  for k, v in kw.items():
    c[k] = v
  return c


def test_config_resolution_and_per_feature_overrides():
  feats = [FeatureSpec("a", "categorical", 1000), FeatureSpec("b", "categorical", 40)]
  cfg = _emb_cfg(method="hashing", bucket_fraction=0.1)
  cfg.per_feature = ml_collections.ConfigDict({"b": {"method": "qr", "dtype": "int8"}})
  specs = {t.name: t for t in features.table_specs(feats, cfg, 8)}
  assert specs["a"].encoder == EncoderSpec("hashing", num_buckets=100, hot_ids=50)
  assert specs["b"].encoder.method == "qr" and specs["b"].dtype == "int8"


@pytest.mark.parametrize(
  "kw,per,match",
  [
    ({"method": "lsh"}, {}, r"table 'a'.*unknown embedding method 'lsh'"),
    ({"method": "hashing", "bucket_fraction": 0.0}, {}, r"table 'a'.*num_buckets >= 1"),
    ({"dtype": "int4"}, {}, r"table 'a'.*unknown dtype"),
    ({}, {"b": {"method": "qr", "qr_combine": "concat"}}, r"table 'b'.*dim >= 2"),
    ({}, {"n": {"method": "qr"}}, r"'n' is a numeric feature"),
    ({}, {"zz": {"method": "qr"}}, r"no feature or table 'zz'"),
    ({}, {"a": {"buckets": 3}}, r"per_feature\['a'\]: unknown keys"),
  ],
)
def test_invalid_configs_name_the_table_or_feature(kw, per, match):
  feats = [
    FeatureSpec("a", "categorical", 100),
    FeatureSpec("b", "categorical", 10),
    FeatureSpec("n", "numeric"),
  ]
  cfg = _emb_cfg(**kw)
  cfg.per_feature = ml_collections.ConfigDict(per)
  with pytest.raises(SpecError, match=match):
    features.table_specs(feats, cfg, 1)


def test_dhe_rejects_sequence_features():
  f = FeatureSpec("s", "sequence", 10, max_len=3)
  with pytest.raises(SpecError, match="feature 's'.*categorical features only"):
    EmbeddingCollection([f], [TableSpec("s", 10, 4, encoder=EncoderSpec("dhe", dhe_k=8))])


def test_double_hashing_vectors_hot_own_row_cold_mean_of_two():
  col = _collection("double_hashing", stack=False, num_buckets=16, hot_ids=5)
  state = col.init(jax.random.key(0))
  feats, _ = _lookup(col, state, np.array([[3, 0], [700, 0]], np.int32))
  np.testing.assert_allclose(feats["a"][0], state["a/hot"]["table"][3])  # id 3 -> row 3
  _, h1, h2 = hashing.double_hash(np.array([700]), 5, 16)
  dh = state["a/dh"]["table"]
  np.testing.assert_allclose(feats["a"][1], 0.5 * (dh[h1[0]] + dh[h2[0]]), rtol=1e-6)
