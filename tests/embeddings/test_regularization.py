"""Embedding L2 penalty: sparse (touched rows) and dense (every row, FuxiCTR) modes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxctr.embeddings import regularization
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec

FEATURES = [
  FeatureSpec("a", "categorical", 10),
  FeatureSpec("b", "categorical", 7),
  FeatureSpec("s", "sequence", 10, max_len=3, pooling="mean", table="a"),
]
L2 = 0.3


def _batch(seed=0, n=4):
  rng = np.random.default_rng(seed)
  s = rng.integers(0, 10, (n, 3))
  s[rng.random((n, 3)) < 0.3] = -1
  return {"cat": np.stack([rng.integers(0, 10, n), rng.integers(0, 7, n)], 1), "s": s}


def _loss(coll, rows, ids):
  out = coll.assemble(rows, ids)
  return sum(jnp.sum(jnp.sin(3.0 * v) * (i + 1)) for i, v in enumerate(out.values()))


def _collection(spec, dtype="float32"):
  tables = [
    TableSpec("a", 10, 4, init_std=0.3, optimizer=spec, dtype=dtype),
    TableSpec("b", 7, 4, init_std=0.3, optimizer=spec, dtype=dtype),
  ]
  coll = EmbeddingCollection(FEATURES, tables)
  assert len(coll.stacks) == 1  # both tables stacked: offsets must be honoured
  return coll


def _step(coll, state, batch, t, l2, mode):
  ids = coll.prepare(batch)
  rows = coll.gather(state, ids)
  g = jax.grad(lambda r: _loss(coll, r, ids))(rows)
  ids2, g2 = regularization.add_l2(coll, state, ids, rows, g, l2, mode)
  return coll.apply_gradients(state, ids2, g2, jnp.int32(t)), ids, g


def test_sgd_matches_hand_computation():
  lr = 0.1
  coll = _collection(OptimizerSpec("sgd", learning_rate=lr))
  name = coll.stacks[0].name
  state = coll.init(jax.random.key(0))
  w = np.asarray(state[name]["table"])
  batch = _batch()
  ids = coll.prepare(batch)
  n = int(np.sum(np.asarray(ids[name]["uniq"]) < coll.stacks[0].rows))
  touched = np.asarray(ids[name]["uniq"])[:n]
  untouched = np.setdiff1d(np.arange(w.shape[0]), touched)
  assert len(untouched) > 0
  g_rows = np.asarray(jax.grad(lambda r: _loss(coll, r, ids))(coll.gather(state, ids))[name])[:n]

  sparse, _, _ = _step(coll, state, batch, 1, L2, "sparse")
  dense, _, _ = _step(coll, state, batch, 1, L2, "dense")
  sparse, dense = np.asarray(sparse[name]["table"]), np.asarray(dense[name]["table"])

  expected_touched = w[touched] - lr * (g_rows + L2 * w[touched])
  np.testing.assert_allclose(sparse[touched], expected_touched, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(dense[touched], expected_touched, rtol=1e-5, atol=1e-6)
  # Sparse leaves the rows the batch does not touch alone; dense decays them.
  np.testing.assert_array_equal(sparse[untouched], w[untouched])
  np.testing.assert_allclose(dense[untouched], w[untouched] * (1 - lr * L2), rtol=1e-6)
  assert np.all(dense[untouched] != w[untouched])


def test_zero_l2_is_the_plain_update():
  coll = _collection(OptimizerSpec("adam", learning_rate=0.05))
  state = coll.init(jax.random.key(0))
  ids = coll.prepare(_batch())
  rows = coll.gather(state, ids)
  g = jax.grad(lambda r: _loss(coll, r, ids))(rows)
  for mode in regularization.MODES:
    ids2, g2 = regularization.add_l2(coll, state, ids, rows, g, 0.0, mode)
    assert ids2 is ids and g2 is g
  with pytest.raises(ValueError, match="l2_mode: unknown 'desne'"):
    regularization.add_l2(coll, state, ids, rows, g, L2, "desne")


@pytest.mark.parametrize("name", ["adam", "adam_lazy", "sgd", "adagrad"])
def test_dense_mode_equals_dense_optax_with_l2_loss(name):
  """Dense mode = the optimizer on the whole table with loss + (l2/2)||W||^2 (FuxiCTR)."""
  lr = 0.05
  spec = OptimizerSpec(name, learning_rate=lr)
  coll = _collection(spec)
  stack = coll.stacks[0].name
  state = coll.init(jax.random.key(1))
  table = state[stack]["table"]
  tx = {
    "adam": optax.adam(lr, eps=spec.eps),
    "adam_lazy": optax.adam(lr, eps=spec.eps),
    "sgd": optax.sgd(lr),
    "adagrad": optax.adagrad(lr, initial_accumulator_value=0.0, eps=spec.eps),
  }[name]
  opt_state = tx.init(table)
  for t in range(1, 5):
    batch = _batch(seed=t)
    state, ids, _ = _step(coll, state, batch, t, L2, "dense")

    def full_loss(w, ids=ids):
      rows = coll.gather({stack: {"table": w}}, ids)
      return _loss(coll, rows, ids) + 0.5 * L2 * jnp.sum(w * w)

    upd, opt_state = tx.update(jax.grad(full_loss)(table), opt_state, table)
    table = optax.apply_updates(table, upd)
  np.testing.assert_allclose(state[stack]["table"], table, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_adam_dense_mode_moves_untouched_rows_and_slots(dtype):
  coll = _collection(OptimizerSpec("adam_lazy", learning_rate=0.01), dtype=dtype)
  stack = coll.stacks[0].name
  state = coll.init(jax.random.key(2))
  before = coll.gather(state, {stack: {"uniq": jnp.arange(coll.stacks[0].rows)}})[stack]
  batch = _batch()
  ids = coll.prepare(batch)
  n = int(np.sum(np.asarray(ids[stack]["uniq"]) < coll.stacks[0].rows))
  untouched = np.setdiff1d(np.arange(coll.stacks[0].rows), np.asarray(ids[stack]["uniq"])[:n])
  out = {}
  for mode in regularization.MODES:
    new, _, _ = _step(coll, state, batch, 1, L2, mode)
    out[mode] = new
    after = coll.gather(new, {stack: {"uniq": jnp.arange(coll.stacks[0].rows)}})[stack]
    moved = np.any(np.asarray(after)[untouched] != np.asarray(before)[untouched], axis=1)
    m_set = np.any(np.asarray(new[stack]["m"])[untouched] != 0, axis=1)
    if mode == "dense":
      assert moved.all() and m_set.all()
    else:
      assert not moved.any() and not m_set.any()
