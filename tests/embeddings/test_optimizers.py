"""Sparse optimizers: equality with dense optax where the math is the same, and
the semantics of the lazy/row-wise variants."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxctr.embeddings import optimizers
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, SpecError, TableSpec

FEATURES = [
  FeatureSpec("a", "categorical", 10),
  FeatureSpec("b", "categorical", 7),
  FeatureSpec("s", "sequence", 10, max_len=3, pooling="mean", table="a"),
]


def _batches(n, seed=0):
  rng = np.random.default_rng(seed)
  for _ in range(n):
    s = rng.integers(0, 10, (6, 3))
    s[rng.random((6, 3)) < 0.3] = -1
    yield {"cat": np.stack([rng.integers(0, 10, 6), rng.integers(0, 7, 6)], 1), "s": s}


def _loss(coll, rows, ids):
  out = coll.assemble(rows, ids)
  return sum(jnp.sum(jnp.sin(3.0 * v) * (i + 1)) for i, v in enumerate(out.values()))


def _run_sparse(spec, steps=5):
  tables = [
    TableSpec("a", 10, 4, init_std=0.3, optimizer=spec),
    TableSpec("b", 7, 4, init_std=0.3, optimizer=spec),
  ]
  coll = EmbeddingCollection(FEATURES, tables)
  state = coll.init(jax.random.key(0))
  init_table = state[coll.stacks[0].name]["table"]
  for t, batch in enumerate(_batches(steps), start=1):
    ids = coll.prepare(batch)
    g = jax.grad(lambda r: _loss(coll, r, ids))(coll.gather(state, ids))
    state = coll.apply_gradients(state, ids, g, jnp.int32(t))
  return coll, init_table, state[coll.stacks[0].name]["table"]


def _run_dense(coll, table, tx, steps=5):
  name = coll.stacks[0].name
  opt_state = tx.init(table)
  for batch in _batches(steps):
    ids = coll.prepare(batch)
    g = jax.grad(lambda t: _loss(coll, coll.gather({name: {"table": t}}, ids), ids))(table)
    upd, opt_state = tx.update(g, opt_state, table)
    table = optax.apply_updates(table, upd)
  return table


@pytest.mark.parametrize(
  "spec,tx",
  [
    (OptimizerSpec("sgd", learning_rate=0.1), optax.sgd(0.1)),
    (
      OptimizerSpec("adagrad", learning_rate=0.1, initial_accumulator=0.1, eps=1e-7),
      optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
  ],
)
def test_matches_dense_optax(spec, tx):
  coll, init, sparse = _run_sparse(spec)
  dense = _run_dense(coll, init, tx)
  np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-6)
  assert not np.allclose(np.asarray(sparse), np.asarray(init))


def test_lazy_adam_touches_only_batch_rows_and_matches_first_step_of_adam():
  spec = OptimizerSpec("adam_lazy", learning_rate=0.05)
  coll, init, sparse = _run_sparse(spec, steps=1)
  dense = _run_dense(coll, init, optax.adam(0.05), steps=1)
  # After one step, lazy Adam equals Adam on touched rows; untouched rows stay put
  # (Adam's update of a zero-gradient row at step 1 is also zero).
  np.testing.assert_allclose(np.asarray(sparse), np.asarray(dense), atol=1e-6)
  coll, init, sparse = _run_sparse(spec, steps=4)
  batch_rows = set()
  for batch in _batches(4):
    ids = coll.prepare(batch)
    name = coll.stacks[0].name
    batch_rows |= {int(r) for r in ids[name]["uniq"] if r < coll.stacks[0].rows}
  changed = np.flatnonzero(np.any(np.asarray(sparse) != np.asarray(init), axis=1))
  assert set(changed.tolist()) == batch_rows


def test_rowwise_adagrad_uses_one_accumulator_per_row():
  w = jnp.ones((2, 4))
  g = jnp.array([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]])
  spec = OptimizerSpec("rowwise_adagrad", learning_rate=0.5, eps=0.0)
  opt = optimizers.get(spec)
  new_w, slots = opt.update(w, {"accumulator": jnp.zeros((2, 1))}, g, jnp.int32(1), spec)
  np.testing.assert_allclose(slots["accumulator"][:, 0], [1.0, 1.0])  # mean of g^2 per row
  np.testing.assert_allclose(new_w, 1.0 - 0.5 * g)


def test_ftrl_l1_zeroes_small_weights():
  spec = OptimizerSpec("ftrl", learning_rate=0.1, l1=1.0, initial_accumulator=0.1)
  opt = optimizers.get(spec)
  w = jnp.zeros((1, 3))
  slots = {"n": jnp.full((1, 3), 0.1), "z": jnp.zeros((1, 3))}
  new_w, slots = opt.update(w, slots, jnp.array([[0.5, -3.0, 2.0]]), jnp.int32(1), spec)
  assert new_w[0, 0] == 0.0  # |z| = 0.5 <= l1
  assert new_w[0, 1] > 0 and new_w[0, 2] < 0  # moves against the gradient


def test_clip_norm_bounds_row_update():
  spec = OptimizerSpec("sgd", learning_rate=1.0, clip_norm=1.0)
  opt = optimizers.get(spec)
  new_w, _ = opt.update(jnp.zeros((1, 2)), {}, jnp.array([[30.0, 40.0]]), jnp.int32(1), spec)
  np.testing.assert_allclose(new_w, [[-0.6, -0.8]], atol=1e-6)


def test_unknown_optimizer_names_table():
  spec = OptimizerSpec("adamm")
  with pytest.raises(SpecError, match="table 'a'.*adamm"):
    EmbeddingCollection(FEATURES, [TableSpec("a", 10, 4, optimizer=spec), TableSpec("b", 7, 4)])
