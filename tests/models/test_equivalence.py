"""Fast formulas against their explicit definitions."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxctr.models import layers
from jaxctr.models.dcnv2 import CrossNetV2
from jaxctr.models.nfm import bi_interaction
from jaxctr.models.xdeepfm import cin_layer
from tests.models.common import VARIANTS, B, D, F, N, assert_close, build, make_inputs


def _v(shape=(B, F, D), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_fm_interaction_equals_pairwise_sum():
  v = _v()
  explicit = sum(
    jnp.sum(v[:, i] * v[:, j], axis=-1) for i, j in itertools.combinations(range(F), 2)
  )
  assert_close(layers.fm_interaction(v), explicit, tol=1e-4)
  # NFM's bi-interaction pooling is the FM term before the sum over D.
  assert_close(bi_interaction(v).sum(-1), explicit, tol=1e-4)


def test_pairwise_products_equal_explicit_loop():
  """IPNN's inner products, in pair_indices order."""
  v = _v()
  i, j = layers.pair_indices(F)
  got = layers.pairwise_products(v)
  assert got.shape == (B, layers.num_pairs(F))
  for p, (a, b) in enumerate(itertools.combinations(range(F), 2)):
    assert (i[p], j[p]) == (a, b)
    assert_close(got[:, p], (v[:, a] * v[:, b]).sum(-1))


def test_ipnn_first_layer_sees_embeddings_products_and_dense():
  name, cfg = VARIANTS["ipnn"]
  model = build(name, cfg)
  inputs = make_inputs(name, cfg)
  first = model.dnn.layers[0]
  x = jnp.concatenate(
    [inputs.fields.reshape(B, -1), layers.pairwise_products(inputs.fields), inputs.dense], -1
  )
  manual = model.dnn.out(jax.nn.relu(model.dnn.layers[1](jax.nn.relu(first(x)))))[:, 0]
  assert_close(model(inputs), manual, tol=1e-4)


def test_dcnv2_full_rank_layer_closed_form():
  k = 7
  net = CrossNetV2(k, 1, rngs=nnx.Rngs(0))
  x0 = _v((B, k))
  w = net.dense[0].kernel[...]
  b = net.dense[0].bias[...]
  assert_close(net(x0), x0 * (x0 @ w + b) + x0, tol=1e-4)


def test_dcn_cross_layer_closed_form():
  name, cfg = VARIANTS["dcn"]
  model = build(name, cfg)
  x0 = _v((B, F * D + N))
  w0, b0 = model.cross.w[0][...], model.cross.b[0][...]
  w1, b1 = model.cross.w[1][...], model.cross.b[1][...]
  x1 = x0 * (x0 @ w0)[:, None] + b0 + x0
  x2 = x0 * (x1 @ w1)[:, None] + b1 + x1
  assert_close(model.cross(x0), x2, tol=1e-4)


def test_cin_first_layer_against_loop():
  h_out = 3
  x0 = np.asarray(_v((2, F, D)))
  rng = np.random.default_rng(0)
  w = rng.normal(size=(F * F, h_out)).astype(np.float32)
  bias = rng.normal(size=(h_out,)).astype(np.float32)
  expected = np.zeros((2, h_out, D), np.float32)
  for h in range(h_out):
    expected[:, h] = bias[h]
    for i in range(F):
      for j in range(F):
        expected[:, h] += w[i * F + j, h] * x0[:, i] * x0[:, j]
  assert_close(
    cin_layer(jnp.asarray(x0), jnp.asarray(x0), jnp.asarray(w), jnp.asarray(bias)),
    expected,
    tol=1e-4,
  )


def test_ffm_against_explicit_field_aware_sum():
  name, cfg = VARIANTS["ffm"]
  model = build(name, cfg)
  inputs = make_inputs(name, cfg)
  v = np.asarray(inputs.fields).reshape(B, F, F, D)
  explicit = sum((v[:, i, j] * v[:, j, i]).sum(-1) for i, j in itertools.combinations(range(F), 2))
  assert_close(model(inputs) - model.linear(inputs), explicit, tol=1e-4)


def test_fwfm_with_unit_pair_weights_is_fm():
  fwfm = build("fwfm", {})
  fm = build("fm", {})
  inputs = make_inputs("fm", {})
  # Same seed, same LinearTerm initialisation: both start from identical first-order parts.
  assert_close(fwfm(inputs), fm(inputs), tol=1e-4)


def test_opnn_sum_is_outer_product_of_field_sum():
  name, cfg = VARIANTS["opnn"]
  model = build(name, cfg)
  v = _v()
  s = np.asarray(v).sum(1)
  assert_close(model.products(v), np.einsum("bd,be->bde", s, s).reshape(B, -1), tol=1e-4)
  # The "num" kernel with unit weights reduces to IPNN's inner products.
  num = build("opnn", {**cfg, "product_type": "num"})
  assert_close(num.products(v), layers.pairwise_products(v), tol=1e-5)
