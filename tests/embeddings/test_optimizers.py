"""Sparse optimizers: equality with dense optax where the math is the same, and
the semantics of the lazy/row-wise variants."""

import dataclasses
import re

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


# ---- Multi-step numpy references, rows skipped for several steps ----------------------------

ROWS, DIM, STEPS = 12, 3, 14


def _touch_schedule():
  """Rows touched at each step: about a third per step, so rows sit out for several steps."""
  rng = np.random.default_rng(1)
  sched = [np.flatnonzero(rng.random(ROWS) < 0.35) for _ in range(STEPS)]
  gaps = [np.diff([t for t, r in enumerate(sched) if row in r]) for row in range(ROWS)]
  assert max(int(g.max(initial=0)) for g in gaps) >= 4  # some row skips >= 3 steps
  return sched


def _clip(g, clip):
  if clip <= 0:
    return g
  norm = np.sqrt(np.sum(g * g, axis=-1, keepdims=True))
  return g * np.minimum(1.0, clip / np.maximum(norm, 1e-12))


def _ref_adam(w, sched, grads, s, lazy, lrs):
  """Adam on the rows a step touches. ``lazy``: PyTorch SparseAdam (moments of untouched
  rows frozen, global step in the bias correction). Otherwise moments of every row decay on
  every step (dense Adam with a zero gradient) but untouched rows do not move."""
  m, v = np.zeros_like(w), np.zeros_like(w)
  for t, (rows, g, lr) in enumerate(zip(sched, grads, lrs), start=1):
    g = _clip(g, s.clip_norm)
    if not lazy:
      m *= s.b1
      v *= s.b2
      m[rows] += (1 - s.b1) * g
      v[rows] += (1 - s.b2) * g * g
      upd = (m[rows] / (1 - s.b1**t)) / (np.sqrt(v[rows] / (1 - s.b2**t)) + s.eps)
    else:
      m[rows] = s.b1 * m[rows] + (1 - s.b1) * g
      v[rows] = s.b2 * v[rows] + (1 - s.b2) * g * g
      step_size = np.sqrt(1 - s.b2**t) / (1 - s.b1**t)
      upd = step_size * m[rows] / (np.sqrt(v[rows]) + s.eps)
    w[rows] = w[rows] - lr * upd - lr * s.weight_decay * w[rows]
  return w


def _ref_rowwise_adagrad(w, sched, grads, s, lrs):
  """FBGEMM's EXACT_ROWWISE_ADAGRAD with WeightDecayMode.L2 (decay added to the gradient)."""
  acc = np.full((len(w), 1), s.initial_accumulator)
  for rows, g, lr in zip(sched, grads, lrs):
    g = _clip(g, s.clip_norm) + s.weight_decay * w[rows]
    acc[rows] += np.mean(g * g, axis=-1, keepdims=True)
    w[rows] -= lr * g / (np.sqrt(acc[rows]) + s.eps)
  return w


def _ref_ftrl(w, sched, grads, s, lrs):
  """McMahan et al. 2013, Algorithm 1 (per coordinate), from zero weights."""
  assert not w.any()
  z, n = np.zeros_like(w), np.full_like(w, s.initial_accumulator)
  for rows, g, lr in zip(sched, grads, lrs):
    g = _clip(g, s.clip_norm) + s.weight_decay * w[rows]
    sigma = (np.sqrt(n[rows] + g * g) - np.sqrt(n[rows])) / lr
    z[rows] += g - sigma * w[rows]
    n[rows] += g * g
    zr = z[rows]
    w[rows] = np.where(
      np.abs(zr) <= s.l1,
      0.0,
      -(zr - np.sign(zr) * s.l1) / ((s.beta + np.sqrt(n[rows])) / lr + 2 * s.l2),
    )
  return w


def _run_schedule(spec, init_std, lrs):
  """Drives the collection's jitted, donated sparse update with the touch schedule."""
  coll = EmbeddingCollection(
    [FeatureSpec("f", "categorical", ROWS)],
    [TableSpec("f", ROWS, DIM, init_std=init_std, optimizer=spec)],
  )
  state = coll.init(jax.random.key(3))
  init = np.asarray(state["f"]["table"], np.float64).copy()
  step = jax.jit(coll.apply_gradients, donate_argnums=(0,))
  rng = np.random.default_rng(2)
  sched, grads = _touch_schedule(), []
  for t, rows in enumerate(sched, start=1):
    g_rows = rng.normal(size=(len(rows), DIM)) * rng.choice([0.1, 3.0], size=(len(rows), 1))
    grads.append(g_rows)
    ids = coll.prepare({"cat": rows[:, None]})
    uniq = np.asarray(ids["f"]["uniq"])
    g = np.zeros((len(uniq), DIM), np.float32)
    g[: len(rows)] = g_rows[np.searchsorted(rows, uniq[: len(rows)])]
    lr_scale = jnp.float32(lrs[t - 1] / spec.learning_rate)
    state = step(state, ids, {"f": jnp.asarray(g)}, jnp.int32(t), lr_scale)
  return init, sched, grads, np.asarray(state["f"]["table"])


LRS = np.linspace(0.05, 0.01, STEPS)


@pytest.mark.parametrize("clip,wd", [(0.0, 0.0), (1.0, 0.01)])
@pytest.mark.parametrize("name", ["adam", "adam_lazy", "rowwise_adagrad", "ftrl"])
def test_multi_step_matches_numpy_reference(name, clip, wd):
  spec = OptimizerSpec(
    name,
    learning_rate=0.05,
    b1=0.8,
    b2=0.95,
    eps=1e-6,
    initial_accumulator=0.1,
    clip_norm=clip,
    weight_decay=wd,
    l1=0.02 if name == "ftrl" else 0.0,
    l2=0.1,
    beta=0.5,
  )
  init_std = 0.0 if name == "ftrl" else 0.3
  init, sched, grads, got = _run_schedule(spec, init_std, LRS)
  w = init.copy()
  if name in ("adam", "adam_lazy"):
    want = _ref_adam(w, sched, grads, spec, name == "adam_lazy", LRS)
  elif name == "rowwise_adagrad":
    want = _ref_rowwise_adagrad(w, sched, grads, spec, LRS)
  else:
    want = _ref_ftrl(w, sched, grads, spec, LRS)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
  assert np.abs(got - init).max() > 1e-2


def test_adam_catch_up_differs_from_lazy():
  """The catch-up decay is really applied: adam and adam_lazy part ways once rows skip steps."""
  spec = OptimizerSpec("adam", learning_rate=0.05, b1=0.5, b2=0.6)
  _, _, _, adam = _run_schedule(spec, 0.3, LRS)
  _, _, _, lazy = _run_schedule(dataclasses.replace(spec, name="adam_lazy"), 0.3, LRS)
  assert np.abs(adam - lazy).max() > 1e-3


def test_ftrl_zero_learning_rate_is_a_no_op():
  spec = OptimizerSpec("ftrl", learning_rate=0.1, initial_accumulator=0.1)
  lrs = np.concatenate([np.full(STEPS - 3, 0.1), np.zeros(3)])  # a schedule ending at 0
  _, _, _, got = _run_schedule(spec, 0.3, lrs)
  assert np.all(np.isfinite(got))
  opt = optimizers.get(spec)
  w = jnp.ones((2, 3))
  slots = {"n": jnp.full((2, 3), 0.1), "z": jnp.zeros((2, 3))}
  zero = dataclasses.replace(spec, learning_rate=jnp.float32(0.0))
  new_w, new_slots = opt.update(w, slots, jnp.ones((2, 3)), jnp.int32(5), zero)
  np.testing.assert_array_equal(new_w, w)
  np.testing.assert_array_equal(new_slots["n"], slots["n"])
  np.testing.assert_array_equal(new_slots["z"], slots["z"])


def test_ftrl_keeps_random_init_on_first_update():
  """A small gradient moves a randomly initialised row a little, instead of wiping it."""
  spec = OptimizerSpec("ftrl", learning_rate=0.1, beta=1.0)
  opt = optimizers.get(spec)
  w = jnp.array([[0.3, -0.2, 0.05]])
  slots = {"n": jnp.zeros((1, 3)), "z": jnp.zeros((1, 3))}
  g = jnp.array([[0.01, -0.02, 0.0]])
  new_w, slots = opt.update(w, slots, g, jnp.int32(1), spec)
  np.testing.assert_allclose(new_w, w - 0.1 * g / (1.0 + jnp.abs(g)), rtol=1e-5)
  # Later updates follow Algorithm 1 from there (no second re-centring).
  w2, _ = opt.update(new_w, slots, g, jnp.int32(2), spec)
  assert np.all(np.abs(np.asarray(w2 - new_w)) <= 0.1 * np.abs(np.asarray(g)) + 1e-7)


# ---- Cost flat in the vocabulary -----------------------------------------------------------

VOCAB = 4099  # a row count no other array in the step has


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_compiled_update_writes_only_touched_rows(name):
  """The donated step updates tables and slots in place by scatters; any other instruction
  producing a [VOCAB, ...] array (copy, dynamic-update-slice, broadcast, elementwise) is a
  whole-table pass that makes the step O(vocabulary)."""
  feats = [FeatureSpec(f"c{i}", "categorical", VOCAB, table="t") for i in range(3)]
  coll = EmbeddingCollection(
    feats, [TableSpec("t", VOCAB, 8, optimizer=OptimizerSpec(name, learning_rate=0.01))]
  )
  state = coll.init(jax.random.key(0))
  ids = coll.prepare({"cat": np.random.default_rng(0).integers(0, VOCAB, (16, 3))})

  def step(state, ids, t, lr):
    rows = coll.gather(state, ids)
    g = jax.grad(lambda r: sum(jnp.sum(v * v) for v in coll.assemble(r, ids).values()))(rows)
    return coll.apply_gradients(state, ids, g, t, lr)

  lowered = jax.jit(step, donate_argnums=(0,)).lower(state, ids, jnp.int32(3), jnp.float32(1))
  hlo = lowered.compile().as_text()
  offenders = []
  for line in hlo.splitlines():
    m = re.search(rf"= \w+\[{VOCAB},\d+\]\{{[^}}]*\}} ([\w-]+)\(", line)
    if m is None or m.group(1) == "parameter":
      continue
    if m.group(1) in ("scatter", "bitcast") or (m.group(1) == "fusion" and "scatter" in line):
      continue
    offenders.append(line.strip()[:200])
  assert not offenders, f"{name}: whole-table work in the step:\n" + "\n".join(offenders)


# ---- Per-table optimizer settings ------------------------------------------------------------


def test_every_optimizer_setting_resolves_per_table(tmp_path):
  from jaxctr import configs, features, train
  from tests.common import override

  feats = [FeatureSpec("a", "categorical", 50), FeatureSpec("b", "categorical", 20)]
  cfg = override(
    configs.base_config().embedding,
    {"optimizer": "adam", "b1": 0.7, "b2": 0.9, "eps": 1e-5, "ftrl_beta": 0.5},
  )
  cfg.per_feature = {
    "b": {"optimizer": "ftrl", "learning_rate": 0.2, "ftrl_l1": 0.01, "ftrl_l2": 0.3},
    "a": {"initial_accumulator": 0.2, "init_std": 0.05},
  }
  specs = {t.name: t for t in features.table_specs(feats, cfg, 4)}
  a, b = specs["a"].optimizer, specs["b"].optimizer
  assert (a.name, a.b1, a.b2, a.eps, a.initial_accumulator) == ("adam", 0.7, 0.9, 1e-5, 0.2)
  assert specs["a"].init_std == 0.05
  assert (b.name, b.learning_rate, b.l1, b.l2, b.beta) == ("ftrl", 0.2, 0.01, 0.3, 0.5)
  cfg.per_feature = {"a": {"ftrl_alpha": 1.0}}
  with pytest.raises(SpecError, match=r"per_feature\['a'\]: unknown keys \['ftrl_alpha'\]"):
    features.table_specs(feats, cfg, 4)

  # A different optimizer per table end to end: FTRL on Wide & Deep's cross table,
  # row-wise Adagrad on the deep tables.
  c = configs.base_config()
  override(
    c,
    {
      "dataset.data_dir": str(tmp_path),
      "dataset.builder_kwargs": {"config": "tiny"},
      "model": "wide_deep",
      "model_config.cross_pairs": (("C1", "C2"),),
      "model_config.cross_hash_buckets": 64,
      "model_config.hidden": (8,),
      "embedding.optimizer": "rowwise_adagrad",
      "embedding.per_feature": {"cross_linear": {"optimizer": "ftrl", "ftrl_l1": 0.1}},
      "num_devices": 1,
    },
  )
  t = train.Trainer(c)
  by_table = {tb.name: s.optimizer.name for s in t.collection.stacks for tb in s.tables}
  assert by_table.pop("cross_linear") == "ftrl"
  assert set(by_table.values()) == {"rowwise_adagrad"}
