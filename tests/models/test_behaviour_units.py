"""Formula and equivalence tests of the behaviour models' units (DIN, SIM, UBR4CTR, CAN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxctr import features as features_lib
from jaxctr import models
from jaxctr.models import ModelInputs, attention, can, sim, ubr4ctr

B, L, D = 4, 12, 3


def _np(x):
  return np.asarray(x, np.float64)


def test_din_unit_by_hand():
  """Scores = MLP([q, k, q-k, q*k]) with PReLU, masked, no softmax; output sum_l w_l k_l."""
  unit = attention.DINAttention(D, (5,), activation="prelu", rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  q = rng.normal(size=(B, D)).astype(np.float32)
  k = rng.normal(size=(B, L, D)).astype(np.float32)
  mask = (rng.random((B, L)) < 0.7).astype(np.float32)
  out = unit(jnp.asarray(q), jnp.asarray(k), jnp.asarray(mask))
  w1, b1 = _np(unit.layers[0].kernel[...]), _np(unit.layers[0].bias[...])
  alpha = _np(unit.acts[0].module.alpha[...])
  w2, b2 = _np(unit.out.kernel[...]), _np(unit.out.bias[...])
  want = np.zeros((B, D))
  for b in range(B):
    for pos in range(L):
      x = np.concatenate([q[b], k[b, pos], q[b] - k[b, pos], q[b] * k[b, pos]])
      h = x @ w1 + b1
      h = np.where(h >= 0, h, alpha * h)
      score = (h @ w2 + b2)[0]
      want[b] += mask[b, pos] * score * k[b, pos]
  np.testing.assert_allclose(_np(out), want, rtol=1e-4, atol=1e-5)
  # softmax=True: weights over real positions sum to one.
  unit.softmax = True
  w = unit.weights(jnp.asarray(q), jnp.asarray(k), jnp.asarray(mask))
  np.testing.assert_allclose(_np(w).sum(1), (mask.sum(1) > 0).astype(float), atol=1e-5)
  assert float(jnp.abs(w * (1 - mask)).max()) == 0.0


def test_dice_matches_formula():
  dice = attention.Dice(3, rngs=nnx.Rngs(0))
  dice.alpha[...] = jnp.array([0.1, -0.2, 0.3])
  x = jax.random.normal(jax.random.key(1), (6, 3))
  y = dice(x, train=True)
  xn = _np(x)
  p = 1 / (1 + np.exp(-(xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-8)))
  np.testing.assert_allclose(_np(y), p * xn + (1 - p) * np.array([0.1, -0.2, 0.3]) * xn, atol=1e-5)


def test_sim_hard_search_returns_exactly_the_same_category():
  rng = np.random.default_rng(1)
  hist = rng.integers(1, 4, (B, L))
  lens = np.array([L, 7, 1, 0])
  mask = np.arange(L)[None] >= L - lens[:, None]
  hist = np.where(mask, hist, -1)
  target = rng.integers(1, 4, B)
  pos, found = sim.hard_search(jnp.asarray(target), jnp.asarray(hist), jnp.asarray(mask), L)
  for b in range(B):
    got = set(np.asarray(pos[b])[np.asarray(found[b]) > 0].tolist())
    assert got == set(np.flatnonzero(mask[b] & (hist[b] == target[b])).tolist()), b
  # With k smaller than the matches, the most recent ones are kept.
  pos2, found2 = sim.hard_search(jnp.asarray(target), jnp.asarray(hist), jnp.asarray(mask), 2)
  for b in range(B):
    matches = np.flatnonzero(mask[b] & (hist[b] == target[b]))
    got = sorted(np.asarray(pos2[b])[np.asarray(found2[b]) > 0].tolist())
    assert got == sorted(matches[-2:].tolist())


def test_sim_soft_search_is_inner_product_top_k():
  rng = np.random.default_rng(2)
  q = rng.normal(size=(B, D)).astype(np.float32)
  k = rng.normal(size=(B, L, D)).astype(np.float32)
  mask = np.ones((B, L), bool)
  mask[1, 5:] = False
  pos, found = sim.soft_search(jnp.asarray(q), jnp.asarray(k), jnp.asarray(mask), 4)
  for b in range(B):
    s = np.where(mask[b], np.einsum("d,ld->l", q[b], k[b]), -np.inf)
    assert set(np.asarray(pos[b]).tolist()) == set(np.argsort(-s)[:4].tolist())
    assert np.asarray(found[b]).sum() == min(4, mask[b].sum())


def test_ubr_inverted_index_retrieval_matches_brute_force():
  rng = np.random.default_rng(3)
  P, n = 2, 16
  hist = rng.integers(0, 5, (n, P, L)).astype(np.int32)
  mask = rng.random((n, L)) < 0.8
  hist = np.where(mask[:, None], hist, -1)
  target = rng.integers(0, 5, (n, P)).astype(np.int32)
  sel = rng.integers(0, 2, (n, P)).astype(np.float32)
  k = 5
  pos, found, scores = ubr4ctr.retrieve(
    jnp.asarray(target), jnp.asarray(hist), jnp.asarray(sel), jnp.asarray(mask), k
  )
  for b in range(n):
    brute = sum(sel[b, f] * (hist[b, f] == target[b, f]) for f in range(P))
    np.testing.assert_array_equal(np.asarray(scores[b]), brute)
    real = np.flatnonzero(mask[b])
    ranked = sorted(real, key=lambda i: (-brute[i], -i))[:k]  # matches, then recency
    got = np.asarray(pos[b])[np.asarray(found[b]) > 0]
    assert got.tolist() == ranked, b


@pytest.mark.parametrize("order_independent", [False, True])
def test_can_micro_mlp_matches_explicit_loop(order_independent):
  feed, hidden, orders = 3, (4, 2), 2
  n = can.micro_size(feed, hidden) * (orders if order_independent else 1)
  rng = np.random.default_rng(4)
  w = rng.normal(size=(B, n)).astype(np.float32)
  x = rng.normal(size=(B, L, feed)).astype(np.float32)
  mask = (rng.random((B, L)) < 0.6).astype(np.float32)
  got = can.micro_mlp(
    jnp.asarray(w), jnp.asarray(x), jnp.asarray(mask), feed, hidden, orders, order_independent
  )
  size = can.micro_size(feed, hidden)
  want = np.zeros((B, orders * hidden[-1]))
  for b in range(B):
    for o in range(1, orders + 1):
      params = w[b, (o - 1) * size : o * size] if order_independent else w[b, :size]
      for pos in range(L):
        h, at = x[b, pos].astype(np.float64) ** o, 0
        dims = [feed, *hidden]
        for i in range(len(hidden)):
          a, c = dims[i], dims[i + 1]
          kern = params[at : at + a * c].reshape(a, c)
          bias = params[at + a * c : at + a * c + c]
          at += a * c + c
          h = h @ kern + bias
          if i < len(hidden) - 1:
            h = np.tanh(h)
        want[b, (o - 1) * hidden[-1] : o * hidden[-1]] += mask[b, pos] * h
  np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-4)


def test_can_row_layout_and_options():
  cfg = {"feed_dim": 4, "micro_hidden": (4, 4), "orders": 2}
  base = can.micro_size(4, (4, 4))
  assert features_lib.table_dim(can.CAN, 8, 3, cfg) == 8 + base + 4
  cfg_ind = dict(cfg, order_independent=True, combination_independent=True)
  cfg_ind["co_pairs"] = (("item_id", "item_history"), ("item_id", "cate_history"))
  assert features_lib.table_dim(can.CAN, 8, 3, cfg_ind) == 8 + 2 * 2 * base + 4


def _inputs(name, cfg, seed=0, batch=8, length=10, dim=4):
  """ModelInputs as the trainer serves a behaviour model (fields user, item, cate)."""
  cls = models.get_model_class(name)
  width = features_lib.table_dim(cls, dim, 3, cfg)
  rng = np.random.default_rng(seed)
  lens = rng.integers(0, length + 1, batch)
  mask = (np.arange(length)[None] >= length - lens[:, None]).astype(np.float32)
  items = np.where(mask > 0, rng.integers(1, 30, (batch, length)), -1)
  cates = np.where(mask > 0, items % 4 + 1, -1)
  seq = lambda: jnp.asarray(rng.normal(size=(batch, length, width)) * mask[..., None], jnp.float32)
  target_item = rng.integers(1, 30, batch)
  return ModelInputs(
    fields=jnp.asarray(rng.normal(size=(batch, 3, width)), jnp.float32),
    dense=jnp.zeros((batch, 0)),
    sequences={
      "item_history": seq(),
      "item_history/mask": jnp.asarray(mask),
      "cate_history": seq(),
      "cate_history/mask": jnp.asarray(mask),
    },
    field_names=("user_id", "item_id", "cate_id"),
    ids={
      "user_id": jnp.zeros(batch, jnp.int32),
      "item_id": jnp.asarray(target_item, jnp.int32),
      "cate_id": jnp.asarray(target_item % 4 + 1, jnp.int32),
      "item_history": jnp.asarray(items, jnp.int32),
      "cate_history": jnp.asarray(cates, jnp.int32),
    },
  )


# DIN and SIM with hard search train through the trainer in test_behaviour_learning.py.
BEHAVIOUR_VARIANTS = {
  "can": {"hidden": (8,), "feed_dim": 2, "micro_hidden": (3, 2)},
  "sim_soft": {"hidden": (8,), "top_k": 4, "short_len": 3},
  "ubr4ctr": {"hidden": (8,), "top_k": 4},
}


@pytest.mark.parametrize("variant", sorted(BEHAVIOUR_VARIANTS))
def test_behaviour_contract(variant):
  """Logits [B]; the training loss (with aux terms) has finite gradients for every parameter
  that it should reach; UBR4CTR's selector gets gradients through REINFORCE only."""
  name = variant.split("_")[0] if not variant.startswith("din") else "din"
  cfg = BEHAVIOUR_VARIANTS[variant]
  model = models.build(name, cfg, num_fields=3, embed_dim=4, num_dense=0)
  inputs = _inputs(name, cfg)
  labels = (jnp.arange(8) % 2).astype(jnp.float32)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  class Net:  # what features.training_loss needs: the network's model
    pass

  def loss(params):
    m = nnx.merge(graphdef, params, rest, copy=True)
    out = m(inputs, train=True, rngs=nnx.Rngs(dropout=jax.random.key(0)))
    net = Net()
    net.model = m
    return features_lib.training_loss(net, out, labels), out

  (value, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  logits, aux = models.split_output(out)
  assert logits.shape == (8,) and np.isfinite(float(value))
  if name == "sim" and cfg.get("search", "soft") == "soft":
    assert "aux_logits" in aux
  if name == "ubr4ctr":
    assert "log_prob" in aux
    assert float(jnp.abs(grads["sel_out"]["kernel"][...]).sum()) > 0
  leaves = jax.tree.leaves(grads)
  assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
  eval_logits = models.split_output(model(inputs, train=False))[0]
  assert eval_logits.shape == (8,)
