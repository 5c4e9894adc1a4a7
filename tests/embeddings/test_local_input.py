"""Per-process input on 8 fake devices: per-device ids, exchange in the step, equal results.

`EmbeddingCollection.prepare_local` sees only one process's rows (here: the single process's,
split over its 8 devices), so owners learn what to serve inside the step. Lookups, gradients
and updated tables must equal a single device's on the whole batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from jaxctr import parallel
from jaxctr.embeddings import sharded
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec
from tests.embeddings.test_sharded import _batch, _coll, assert_rows_move_by_all_to_all

N = 8
RULES = parallel.DEFAULT_RULES


def _state(coll):
  return coll.shard_state(
    coll.init(jax.random.key(0)),
    lambda x, spec: jax.device_put(np.asarray(x), NamedSharding(coll.placement.mesh, spec)),
  )


def _step(coll, local: bool):
  def f(state, ids, step):
    rows = coll.gather(state, ids)

    def loss(rows):
      out = coll.assemble(rows, ids)
      return sum(jnp.sum(jnp.sin(out[k]) * (i + 1)) for i, k in enumerate(sorted(out))), out

    (lv, out), g = jax.value_and_grad(loss, has_aux=True)(rows)
    return coll.apply_gradients(state, ids, g, step), lv, out

  jitted = jax.jit(f)

  def run(state, batch, step):
    if local:
      ids = parallel.put_local_batch(coll.prepare_local(batch, N), coll.placement.mesh, RULES)
    else:
      ids = jax.tree.map(jnp.asarray, coll.prepare(batch))
    return jitted(state, ids, jnp.int32(step))

  return run


@pytest.mark.parametrize(
  "strategy",
  ["data_parallel", "row_wise", "row_wise_mod", "table_wise", "table_row_wise", "column_wise"],
)
def test_per_device_ids_match_single_device(strategy):
  ref, loc = _coll(), _coll(strategy)
  s_ref, s_loc = ref.init(jax.random.key(0)), _state(loc)
  step_ref, step_loc = _step(ref, False), _step(loc, True)
  rng = np.random.default_rng(0)
  for step in range(1, 9):
    batch = _batch(rng, b=64)
    s_ref, l_ref, o_ref = step_ref(s_ref, batch, step)
    s_loc, l_loc, o_loc = step_loc(s_loc, batch, step)
    # The loss sums sharded outputs in another order; its terms cancel to ~1e-3 of their size.
    np.testing.assert_allclose(l_loc, l_ref, rtol=1e-5, atol=1e-3)
    for k in o_ref:
      np.testing.assert_allclose(o_loc[k], o_ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
  got = loc.unshard_state(s_loc)
  for name, entry in s_ref.items():
    for k, v in entry.items():  # Adam slots too: every touched row updated once, summed grads
      np.testing.assert_allclose(got[name][k], np.asarray(v), rtol=1e-5, atol=1e-6)
  ids = loc.prepare_local(batch, N)
  (stack,) = loc.stacks
  assert ids[stack.name]["inv"].shape[0] == 64  # laid out along the batch: 8 rows per device


def test_route_local_plans_one_device():
  lay = sharded.make_layout("row_wise", [100], 4, N)  # 13 rows per device
  ids = np.array([[3, 40], [3, 99], [100, 14]])  # 100: padding
  uniq, inv = np.unique(ids, return_inverse=True)
  cap = sharded.local_capacity(lay.shard_rows, ids.size)
  req, new_inv = sharded.route_local(lay, uniq, inv.reshape(ids.shape), cap)
  assert req.shape == (N, cap) and cap % 8 == 0
  owner, local = lay.locate(np.array([3, 40, 99, 14]))
  for o, r in zip(owner, local):
    assert r in req[o]
  # The physical row each received slot holds (-1: a zero row), read at every id position.
  received = np.where(req < lay.shard_rows, np.arange(N)[:, None] * lay.shard_rows + req, -1)
  phys = lay.physical_index()
  got = received.reshape(-1)[new_inv]
  want = np.where(ids < 100, ids, -1)
  assert np.array_equal(np.where(got >= 0, phys[got], -1), want)
  assert req[0, cap - 1] == lay.shard_rows  # the zero row padding ids read


def test_route_local_plans_one_device_column_wise():
  lay = sharded.make_layout("column_wise", [100], 4, N)  # every device: 100 rows, 1 column
  ids = np.array([[3, 40], [3, 99], [100, 14]])  # 100: padding
  uniq, inv = np.unique(ids, return_inverse=True)
  cap = sharded.local_capacity(lay.shard_rows, ids.size)
  req, new_inv = sharded.route_local(lay, uniq, inv.reshape(ids.shape), cap)
  assert req.shape == (cap,)
  assert sorted(req[req < 100].tolist()) == [3, 14, 40, 99]  # each distinct row once
  got = np.where(new_inv < cap - 1, req[new_inv], -1)
  assert np.array_equal(got, np.where(ids < 100, ids, -1))
  assert req[cap - 1] == lay.shard_rows  # the zero row padding ids read
  assert sharded.owner_counts(lay, uniq).tolist() == [4] * N  # every owner serves all 4
  with pytest.raises(ValueError, match="exceed capacity 4"):
    sharded.route_local(lay, uniq, inv.reshape(ids.shape), 4)


def test_column_wise_slots_sized_by_the_batch():
  coll = _coll("column_wise")
  (stack,) = coll.stacks
  b = 8  # rows per device
  batch = _batch(np.random.default_rng(2), b=N * b)
  flat = coll._stack_ids(batch)[0][stack.name]
  most = max(int((np.unique(flat[d * b : (d + 1) * b]) < stack.rows).sum()) for d in range(N))
  worst = sharded.local_capacity(stack.rows, b * flat.shape[1])
  req = coll.prepare_local(batch, N)[stack.name]["req"]
  assert req.shape == (N, sharded.capacity_bucket(most + 1, worst))
  agreed = coll.prepare_local(batch, N, lambda sizes: {k: worst for k in sizes})
  assert agreed[stack.name]["req"].shape == (N, worst)


def test_deferred_stacks_refused():
  coll = _coll("column_wise")
  assert coll.local_input_refusal() == ""  # column_wise stacks take per-process input
  coll.deferred_routing = frozenset({coll.stacks[0].name})  # as an offload cache's slots
  assert "routed after prepare" in coll.local_input_refusal()
  with pytest.raises(ValueError, match="per-process input: .*routed after prepare"):
    coll.prepare_local(_batch(np.random.default_rng(0), b=64), N)


@pytest.mark.parametrize("strategy", ["row_wise", "column_wise"])
def test_no_whole_table_all_gather(strategy):
  loc = _coll(strategy)
  state = _state(loc)
  ids = parallel.put_local_batch(
    loc.prepare_local(_batch(np.random.default_rng(1), b=64), N), loc.placement.mesh, RULES
  )

  assert_rows_move_by_all_to_all(loc, state, ids)


def _big_coll():
  """One 80,000-row table split row-wise over 8 devices (10,000 rows each)."""
  opt = OptimizerSpec("adam_lazy", learning_rate=0.1)
  coll = EmbeddingCollection(
    [FeatureSpec("x", "categorical", 80_000)],
    [TableSpec("x", 80_000, 4, optimizer=opt)],
    groups={"x": "row_wise"},
  )
  mesh = parallel.make_mesh(parallel.load_recipe("row_wise"), jax.devices()[:N])
  coll.shard(sharded.MeshPlacement(mesh, ("data",)), row_placement="range", group_size=4)
  return coll


def test_exchange_slots_sized_by_the_batch_not_the_worst_case():
  coll = _big_coll()
  (stack,) = coll.stacks
  b = 64  # rows per device, one id each: the worst case is 64 ids on one owner
  worst = sharded.local_capacity(coll.layouts[stack.name].shard_rows, b)
  spread = np.random.default_rng(0).permutation(80_000)[: N * b, None]
  req = coll.prepare_local({"cat": spread}, N)[stack.name]["req"]
  counts = [
    sharded.owner_counts(coll.layouts[stack.name], np.unique(spread[d * b : (d + 1) * b]))
    for d in range(N)
  ]
  k = req.shape[-1]
  assert max(c.max() for c in counts) + 1 <= k < worst / 2  # ~8 per owner, not 64
  assert k & (k - 1) == 0  # a power of two: few distinct step shapes
  skewed = np.arange(N * b)[:, None]  # every device asks owner 0 only
  assert coll.prepare_local({"cat": skewed}, N)[stack.name]["req"].shape[-1] == worst
  # Another process needing more slots: this one's arrays take the agreed size.
  agreed = coll.prepare_local({"cat": spread}, N, lambda sizes: {k: 32 for k in sizes})
  assert agreed[stack.name]["req"].shape[-1] == 32


def test_slots_sized_per_batch_keep_results_equal_to_one_device():
  """Batches of changing skew get different slot counts; results still equal one device's."""
  ref, loc = _coll(), _coll("row_wise")
  s_ref, s_loc = ref.init(jax.random.key(0)), _state(loc)
  step_ref, step_loc = _step(ref, False), _step(loc, True)
  rng = np.random.default_rng(3)
  sizes = set()
  for step in range(1, 5):
    batch = _batch(rng, b=64)
    if step % 2:  # no histories and one id of table a: few rows asked of owner 0
      batch["s"][:], batch["h"][:], batch["cat"][:, 0] = -1, -1, 0
    sizes.add(loc.prepare_local(batch, N)[loc.stacks[0].name]["req"].shape[-1])
    s_ref, l_ref, _ = step_ref(s_ref, batch, step)
    s_loc, l_loc, _ = step_loc(s_loc, batch, step)
    np.testing.assert_allclose(l_loc, l_ref, rtol=1e-5, atol=1e-3)
  assert len(sizes) > 1
  got = loc.unshard_state(s_loc)
  for name, entry in s_ref.items():
    for k, v in entry.items():
      np.testing.assert_allclose(got[name][k], np.asarray(v), rtol=1e-5, atol=1e-6)
