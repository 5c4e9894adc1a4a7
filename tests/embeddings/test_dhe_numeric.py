"""DHE encodings and numeric-feature encoders (boundaries, AutoDis, shapes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxctr import configs, features
from jaxctr.embeddings import dhe, numeric
from jaxctr.embeddings.specs import EncoderSpec, SpecError


def test_dhe_encoding_distributions_and_uniqueness():
  seeds = jnp.asarray(dhe.hash_seeds(1024, 0, 1))
  ids = jnp.arange(3000)
  u = np.asarray(dhe.encode(ids, seeds[None], "uniform"))
  assert u.shape == (3000, 1024) and u.min() >= -1 and u.max() <= 1
  assert abs(u.mean()) < 0.01 and abs(u.var() - 1 / 3) < 0.01  # U(-1, 1)
  g = np.asarray(dhe.encode(ids, seeds[None], "gaussian"))
  assert abs(g.mean()) < 0.01 and abs(g.std() - 1) < 0.01
  assert abs(np.mean(np.abs(g) < 1) - 0.6827) < 0.01  # the N(0, 1) 1-sigma mass
  assert len(np.unique(u, axis=0)) == 3000  # every id gets its own identifier vector
  # Deterministic: the same id encodes the same way in any batch, ids never seen included.
  np.testing.assert_array_equal(
    dhe.encode(jnp.array([10**9]), seeds[None], "uniform"),
    dhe.encode(jnp.array([10**9, 5]), seeds[None], "uniform")[:1],
  )
  other = np.asarray(dhe.encode(ids, jnp.asarray(dhe.hash_seeds(1024, 0, 2))[None], "uniform"))
  assert abs(np.corrcoef(u.ravel(), other.ravel())[0, 1]) < 0.01  # per-feature salts independent


def test_dhe_module_is_jittable_and_per_feature():
  m = dhe.DHE(EncoderSpec("dhe", dhe_k=16, dhe_hidden=(8,)), 2, [1, 2], 5, rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, x: m(x))(m, jnp.array([[3, 3], [4, 4]]))
  assert out.shape == (2, 2, 5)
  assert not np.allclose(out[:, 0], out[:, 1])  # same id, different features


def test_equal_width_and_frequency_boundaries():
  rng = np.random.default_rng(0)
  x = np.stack([rng.uniform(0, 1, 100_000), rng.exponential(1, 100_000)], axis=1)
  ew = numeric.fit_boundaries("equal_width", x, np.zeros(len(x)), 4)
  np.testing.assert_allclose(ew[0], [0.25, 0.5, 0.75], atol=0.01)
  ef = numeric.fit_boundaries("equal_frequency", x, np.zeros(len(x)), 4)
  np.testing.assert_allclose(ef[1], -np.log(1 - np.array([0.25, 0.5, 0.75])), atol=0.02)
  idx = np.asarray(numeric.bucketize(jnp.asarray(x, jnp.float32), jnp.asarray(ef)))
  np.testing.assert_allclose(np.bincount(idx[:, 1]) / len(x), 0.25, atol=0.01)


def test_log_bucket_matches_floor_log_squared():
  raw = np.array([0.0, 1.0, 2.0, 3.0, 8.0, 50.0, 1000.0, 1e5])
  shift, scale = 1.5, 2.0
  x = ((np.log1p(raw) - shift) / scale)[:, None]  # the prepared values
  b = numeric.fit_boundaries(
    "log_bucket", x, np.zeros(len(x)), 64, [{"log1p_mean": shift, "log1p_std": scale}]
  )
  got = np.asarray(numeric.bucketize(jnp.asarray(x, jnp.float32), jnp.asarray(b)))[:, 0]
  winners = np.where(raw > 2, np.floor(np.log(np.maximum(raw, 1)) ** 2), raw)
  # Buckets 0, 1, 2 are the raw integers; above 2, bucket 2 + j holds floor(log(v)^2) = j.
  want = np.minimum(np.where(raw > 2, 2 + winners, winners), 63)  # the last bucket is open
  np.testing.assert_array_equal(got, want)


def test_tree_boundaries_find_the_label_step():
  rng = np.random.default_rng(0)
  x = rng.uniform(-3, 3, (20_000, 1))
  y = (rng.uniform(size=20_000) < np.where(x[:, 0] > 0.7, 0.8, 0.1)).astype(np.float32)
  b = numeric.fit_boundaries("tree", x, y, 4)
  first_split = b[0][np.isfinite(b[0])]
  assert np.min(np.abs(first_split - 0.7)) < 0.05


def test_autodis_weights_sum_to_one_and_sharpen_with_temperature():
  key = jax.random.key(0)
  x = jax.random.normal(key, (32, 3))
  w1, w2 = jax.random.normal(key, (3, 8)), jax.random.normal(key, (3, 8, 8))
  p = numeric.autodis_weights(x, w1, w2, 0.1, 1.0)
  assert p.shape == (32, 3, 8) and (p >= 0).all()
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  cold = numeric.autodis_weights(x, w1, w2, 0.1, 0.01)
  assert float(cold.max(-1).mean()) > float(p.max(-1).mean())  # lower temperature = harder


@pytest.mark.parametrize("kind", numeric.ENCODERS)
def test_numeric_encoder_shapes(kind):
  cfg = configs.base_config().numeric
  cfg.encoder = kind
  x = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
  sample = (x, (x[:, 0] > 0).astype(np.float32))
  enc = numeric.NumericEncoder(cfg, 3, 5, sample, rngs=nnx.Rngs(0))
  dense, fields = enc(jnp.asarray(x[:7]))
  assert dense.shape == (7, enc.num_dense)
  if enc.num_fields:
    assert fields.shape == (7, enc.num_fields, 5)
  else:
    assert fields is None
  if kind in numeric.BUCKETED:  # boundaries are saved with the module's state
    state = nnx.state(enc, numeric.Buffer)
    assert jax.tree.leaves(state)[0].shape == (3, cfg.num_buckets - 1)


def test_numeric_config_validation():
  cfg = configs.base_config().numeric
  cfg.encoder = "splines"
  with pytest.raises(SpecError, match="config.numeric.encoder: unknown encoder 'splines'"):
    features.validate_numeric(cfg)
  cfg.encoder, cfg.num_buckets = "equal_width", 1
  with pytest.raises(SpecError, match="num_buckets must be >= 2"):
    features.validate_numeric(cfg)


def test_numeric_per_feature_encoders_and_validation():
  from jaxctr.embeddings.specs import FeatureSpec

  feats = [FeatureSpec("C1", "categorical", 10)] + [
    FeatureSpec(f"I{j}", "numeric") for j in range(3)
  ]
  cfg = configs.base_config().numeric
  cfg.encoder = "autodis"
  cfg.per_feature = {"I1": "raw", "I2": "equal_frequency"}
  enc = features.FeatureEncoder(feats, True, rngs=nnx.Rngs(0), numeric=cfg, dim=5)
  assert enc.num_dense == 1 and enc.num_fields == 1 + 2  # I1 dense; I0 (autodis), I2 fields
  batch = {"num": jnp.ones((4, 3))}
  out = enc({"C1": jnp.zeros((4, 5))}, batch)
  assert out.fields.shape == (4, 3, 4) and out.linear.shape == (4, 3) and out.dense.shape == (4, 1)
  cfg.per_feature = {"C1": "autodis"}
  with pytest.raises(SpecError, match=r"per_feature\['C1'\]: 'C1' is a categorical feature"):
    features.numeric_kinds(cfg, feats)
  cfg.per_feature = {"I0": "spline"}
  with pytest.raises(SpecError, match=r"per_feature\['I0'\]: unknown encoder 'spline'"):
    features.numeric_kinds(cfg, feats)
