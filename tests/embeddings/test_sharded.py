"""Sharded stacks on 8 fake devices: layouts, routing, and equality with one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from jaxctr import parallel
from jaxctr.embeddings import sharded
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec

N = 8
STRATS = ["table_wise", "row_wise", "row_wise_mod", "column_wise", "table_row_wise"]


def _features():
  return [
    FeatureSpec("a", "categorical", 50),
    FeatureSpec("b", "categorical", 7),
    FeatureSpec("c", "categorical", 300),
    FeatureSpec("s", "sequence", 50, max_len=3, pooling="mean", table="a"),
    FeatureSpec("h", "sequence", 7, max_len=2, pooling="none", table="b"),
  ]


def _coll(strategy=None, optimizer="adam_lazy", dim=6):
  opt = OptimizerSpec(optimizer, learning_rate=0.1)
  tables = [
    TableSpec(n, v, dim, init_std=1.0, optimizer=opt) for n, v in [("a", 50), ("b", 7), ("c", 300)]
  ]
  groups = {t.name: strategy.replace("_mod", "") for t in tables} if strategy else None
  coll = EmbeddingCollection(_features(), tables, groups=groups)
  if strategy:
    mesh = parallel.make_mesh(parallel.load_recipe("row_wise"), jax.devices()[:N])
    coll.shard(
      sharded.MeshPlacement(mesh, ("data",)),
      row_placement="mod" if strategy.endswith("_mod") else "range",
      group_size=4,
    )
  return coll


def _batch(rng, b=32):
  s = rng.integers(0, 50, (b, 3))
  s[rng.random((b, 3)) < 0.3] = -1
  h = rng.integers(0, 7, (b, 2))
  h[rng.random((b, 2)) < 0.3] = -1
  # Zipf-like: many repeats across devices, so owners really deduplicate.
  cat = np.stack([rng.zipf(1.5, b) % 50, rng.integers(0, 7, b), rng.zipf(1.3, b) % 300], 1)
  return {"cat": cat, "s": s, "h": h}


def _put(coll, ids):
  if coll.placement is None:
    return jax.tree.map(jnp.asarray, ids)
  return coll.put_ids(ids, coll.placement.mesh)


def _step_fn(coll):
  """One jitted lookup + loss + sparse update step of ``coll`` (compiled per id-bucket shape)."""

  def f(state, ids, step):
    rows = coll.gather(state, ids)

    def loss(rows):
      out = coll.assemble(rows, ids)
      total = sum(jnp.sum(jnp.sin(out[k]) * (i + 1)) for i, k in enumerate(sorted(out)))
      return total, out

    (lv, out), g = jax.value_and_grad(loss, has_aux=True)(rows)
    return coll.apply_gradients(state, ids, g, step), lv, out, g

  jitted = jax.jit(f)

  def step_fn(state, batch, step):
    ids = coll.prepare(batch)
    new, lv, out, g = jitted(state, _put(coll, ids), jnp.int32(step))
    return new, lv, out, _row_grads(coll, ids, g)

  return step_fn


def _row_grads(coll, ids, g):
  """{(stack, virtual row): summed gradient} from either layout's row gradients."""
  out = {}
  for s in coll.stacks:
    grad, lay = np.asarray(g[s.name]), coll.layouts.get(s.name)
    if lay is None:
      rows, vecs = ids[s.name]["uniq"], grad
    elif lay.row_based:
      own = ids[s.name]["own_uniq"]  # [n, Ko] local rows per owner
      phys = np.arange(lay.num_shards)[:, None] * lay.shard_rows + own
      real = own < lay.shard_rows
      rows, vecs = lay.physical_index()[phys[real]], grad[real]
    else:  # [n, U, D/n] column slices of the global unique rows
      rows = ids[s.name]["own_uniq"]
      vecs = np.concatenate(list(grad), axis=-1)[:, : s.dim]
    for r, v in zip(rows, vecs):
      if r < s.rows:
        out[(s.name, int(r))] = v
  return out


@pytest.mark.parametrize("strategy", STRATS)
def test_strategy_matches_single_device(strategy):
  ref, sh = _coll(), _coll(strategy)
  state0 = ref.init(jax.random.key(0))
  s_ref = state0
  s_sh = sh.shard_state(
    sh.init(jax.random.key(0)),
    lambda x, spec: jax.device_put(np.asarray(x), NamedSharding(sh.placement.mesh, spec)),
  )
  rng = np.random.default_rng(0)
  step_ref, step_sh = _step_fn(ref), _step_fn(sh)
  for step in range(1, 21):
    batch = _batch(rng)
    s_ref, l_ref, o_ref, g_ref = step_ref(s_ref, batch, step)
    s_sh, l_sh, o_sh, g_sh = step_sh(s_sh, batch, step)
    np.testing.assert_allclose(l_sh, l_ref, rtol=1e-5)
    assert g_sh.keys() == g_ref.keys()  # the same rows get gradients ...
    for k, v in g_ref.items():  # ... of the same values (sums in another order: 1e-5 of scale)
      atol = 1e-5 * max(1.0, float(np.abs(v).max()))
      np.testing.assert_allclose(g_sh[k], v, rtol=1e-5, atol=atol, err_msg=str(k))
    for k in o_ref:
      np.testing.assert_allclose(o_sh[k], o_ref[k], rtol=1e-5, atol=1e-6, err_msg=k)
  virt = sh.unshard_state(s_sh)
  for name, entry in s_ref.items():
    for k, v in entry.items():
      np.testing.assert_allclose(virt[name][k], np.asarray(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", STRATS)
def test_tables_are_split_not_replicated(strategy):
  sh = _coll(strategy)
  state = sh.shard_state(
    sh.init(jax.random.key(0)),
    lambda x, spec: jax.device_put(np.asarray(x), NamedSharding(sh.placement.mesh, spec)),
  )
  total = sum(s.rows for s in sh.stacks) * 6 * 4
  (entry,) = state.values()
  per_dev = [sh_.data.nbytes for sh_ in entry["table"].addressable_shards]
  assert len(per_dev) == N
  # No device holds the whole stack; table_wise devices hold at most the largest table.
  assert max(per_dev) <= (300 * 6 * 4 if strategy == "table_wise" else total / 2)
  # The planner's per-device estimate is what the devices really hold (table + Adam slots).
  held = [0] * N
  for arr in entry.values():
    for i, shard in enumerate(arr.addressable_shards):
      held[i] += shard.data.nbytes
  assert sh.bytes_per_device() == held


def test_layout_round_trip_and_placements():
  for strat, kw in [
    ("row_wise", {}),
    ("row_wise", {"placement": "mod"}),
    ("table_wise", {}),
    ("table_row_wise", {"group_size": 4}),
    ("column_wise", {}),
  ]:
    lay = sharded.make_layout(strat, [50, 7, 300], 6, N, **kw)
    v = np.arange(357 * 6, dtype=np.float32).reshape(357, 6)
    np.testing.assert_array_equal(lay.to_virtual(lay.to_physical(v)), v)
    assert sharded.Layout.from_json(lay.to_json()) == lay
  tw = sharded.make_layout("table_wise", [50, 7, 300], 6, N)
  shard, _ = tw.locate(np.array([0, 49, 50, 57, 356]))
  assert shard[0] == shard[1] and shard[3] == shard[4] and len({shard[0], shard[2], shard[3]}) == 3
  trw = sharded.make_layout("table_row_wise", [50, 7, 300], 6, N, group_size=4)
  shard, _ = trw.locate(np.arange(57, 357))  # table c: its 4 devices form one group
  assert len(set(shard.tolist())) == 4 and len({d // 4 for d in shard.tolist()}) == 1
  mod = sharded.make_layout("row_wise", [50, 7, 300], 6, N, placement="mod")
  assert mod.locate(np.array([9]))[0][0] == 1 and mod.locate(np.array([9]))[1][0] == 1


def test_route_communication_scales_with_batch_not_vocab():
  rng = np.random.default_rng(0)
  sizes = {}
  for vocab in (1_000, 1_000_000):
    lay = sharded.make_layout("row_wise", [vocab], 8, N)
    ids = rng.integers(0, vocab, (256, 4))
    uniq, inv = np.unique(ids, return_inverse=True)
    padded = np.concatenate([uniq, vocab + np.arange(8)])
    r = sharded.route(lay, padded, inv.reshape(ids.shape).astype(np.int32))
    sizes[vocab] = sharded.comm_bytes(lay, r)
    # Each owner serves only rows it holds.
    for d in range(N):
      real = r["own_uniq"][d][r["own_uniq"][d] < lay.shard_rows]
      assert np.all(lay.locate(real + 0)[0] >= 0)
  assert sizes[1_000_000] <= 2 * sizes[1_000]


def assert_rows_move_by_all_to_all(coll, state, ids):
  """The compiled gather + update step exchanges rows all-to-all, never all-gathers a table."""

  def f(state, ids):
    rows = coll.gather(state, ids)
    g = jax.grad(lambda r: sum(jnp.sum(v) for v in coll.assemble(r, ids).values()))(rows)
    return coll.apply_gradients(state, ids, g, jnp.int32(1))

  hlo = jax.jit(f).lower(state, ids).compile().as_text()
  assert "all-to-all" in hlo
  phys_rows = next(iter(state.values()))["table"].shape[0]
  for line in hlo.splitlines():
    if "all-gather" in line:
      assert f"[{phys_rows}," not in line, line


def test_no_whole_table_all_gather():
  sh = _coll("row_wise")
  state = sh.shard_state(
    sh.init(jax.random.key(0)),
    lambda x, spec: jax.device_put(np.asarray(x), NamedSharding(sh.placement.mesh, spec)),
  )
  ids = _put(sh, sh.prepare(_batch(np.random.default_rng(1))))

  assert_rows_move_by_all_to_all(sh, state, ids)
