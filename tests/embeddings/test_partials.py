"""The partials exchange equals the rows exchange: outputs, row gradients and 20-step tables."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxctr import models, parallel
from jaxctr.embeddings import partials, sharded
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec
from jaxctr.models import base, partial_terms

N, B, K = 8, 32, 4
VOCABS = {"a": 40, "b": 7, "c": 100, "d": 13, "e": 60}
NUM_DENSE = 2
MODEL_CFG = {
  "dnn": {"hidden": (8, 4)},
  "deepfm": {"hidden": (8, 4)},
  "fwfm": {"pair_weight_init": 0.5},
}


def _coll(strategy, dim):
  opt = OptimizerSpec("adam_lazy", learning_rate=0.05)
  feats = [FeatureSpec(n, "categorical", v) for n, v in VOCABS.items()]
  tables = [TableSpec(n, v, dim, init_std=0.3, optimizer=opt) for n, v in VOCABS.items()]
  coll = EmbeddingCollection(feats, tables, groups={t.name: strategy for t in tables})
  mesh = parallel.make_mesh(parallel.load_recipe("row_wise"), jax.devices()[:N])
  coll.shard(sharded.MeshPlacement(mesh, ("data",)), group_size=4)
  coll.deferred_routing |= set(coll.layouts)
  coll.granule = B * len(VOCABS)  # one static uniq size: one compile per mode
  return coll


def _batch(rng):
  cat = np.stack(
    [
      rng.zipf(1.4, B) % v if i % 2 else rng.integers(0, v, B)
      for i, v in enumerate(VOCABS.values())
    ],
    1,
  )
  dense = rng.normal(size=(B, NUM_DENSE)).astype(np.float32)
  return {"cat": cat}, dense, (rng.random(B) < 0.4).astype(np.float32)


def _rows_forward(coll, model, rows, ids, dense):
  feats = coll.assemble(rows, ids)
  fields = jnp.stack([feats[n] for n in VOCABS], axis=1)
  linear = None
  if model.needs_linear:
    fields, linear = fields[..., :-1], fields[..., -1]
  return model(base.ModelInputs(fields=fields, dense=dense, linear=linear))


def _partials_forward(coll, model, rows, ids, dense):
  return partial_terms.logits(model, coll, rows, ids, dense)


def _runner(runs, forward):
  """One jitted step of every model (one compile per mode and strategy keeps the test short)."""
  tx = optax.adam(0.02)

  def one(r, params, opt_state, emb, ids, dense, label, n):
    coll = r["coll"]
    rows = coll.gather(emb, ids)

    def loss(params, rows):
      logits = forward(coll, nnx.merge(r["graphdef"], params), rows, ids, dense)
      return optax.sigmoid_binary_cross_entropy(logits, label).mean(), logits

    (lv, logits), (gp, gr) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, rows)
    upd, opt_state = tx.update(gp, opt_state, params)
    params = optax.apply_updates(params, upd)
    return params, opt_state, coll.apply_gradients(emb, ids, gr, n), logits, gr, gp

  @jax.jit
  def step(states, ids, dense, label, n):
    return [one(r, *st, i, dense, label, n) for r, st, i in zip(runs, states, ids, strict=True)]

  return tx, step


def _route(coll, batch, mode):
  ids = coll.prepare(batch)
  for name, lay in coll.layouts.items():
    u, iv = ids[name]["uniq"], ids[name]["inv"]
    gran = B * len(VOCABS) + 1  # fixed K and Ko: one compile
    ids[name] = (sharded.route if mode == "rows" else partials.route)(lay, u, iv, gran)
  mesh = coll.placement.mesh
  if mode == "rows":
    return coll.put_ids(ids, mesh)
  return partials.put_ids(coll, ids, mesh)


def _close(a, b, what):
  a, b = np.asarray(a), np.asarray(b)
  np.testing.assert_allclose(
    a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())), err_msg=what
  )


MODELS = ("lr", "fm", "fwfm", "dnn", "deepfm")


@pytest.mark.parametrize("strategy", ["row_wise", "table_wise", "table_row_wise", "column_wise"])
def test_partials_equal_rows(strategy):
  """LR, FM, FwFM, DNN and DeepFM: both exchanges train the same tables and parameters."""
  t0 = time.time()
  runs = {"rows": [], "partials": []}
  for name in MODELS:
    dim = K + int(models.get_model_class(name).needs_linear)
    model = models.build(
      name, MODEL_CFG.get(name), num_fields=len(VOCABS), embed_dim=K, num_dense=NUM_DENSE
    )
    graphdef, params0 = nnx.split(model)
    for mode in runs:
      coll = _coll(strategy, dim)
      if mode == "partials":
        partials.check(coll)
      mesh = coll.placement.mesh
      put = lambda x, spec, mesh=mesh: jax.device_put(np.asarray(x), NamedSharding(mesh, spec))
      runs[mode].append(
        {
          "coll": coll,
          "graphdef": graphdef,
          "state": [jax.tree.map(lambda x, put=put: put(x, P()), params0), None, None],
          "emb": coll.shard_state(coll.init(jax.random.key(0)), put),
        }
      )
  steps = {}
  for mode, fwd in (("rows", _rows_forward), ("partials", _partials_forward)):
    tx, steps[mode] = _runner(runs[mode], fwd)
    for r in runs[mode]:
      rep = NamedSharding(r["coll"].placement.mesh, P())
      r["state"] = [r["state"][0], jax.device_put(tx.init(r["state"][0]), rep), r["emb"]]
  rng = np.random.default_rng(0)
  for n in range(1, 21):
    batch, dense, label = _batch(rng)
    out = {}
    for mode, rs in runs.items():
      ids = [_route(r["coll"], batch, mode) for r in rs]
      res = steps[mode]([r["state"] for r in rs], ids, dense, label, jnp.int32(n))
      for r, x in zip(rs, res, strict=True):
        r["state"] = list(x[:3])
      out[mode] = [x[3:] for x in res]
    for name, (lr_, gr_r, gp_r), (lp, gr_p, gp_p) in zip(MODELS, out["rows"], out["partials"]):
      _close(lp, lr_, f"{name} logits step {n}")
      for k in gr_r:  # same own_uniq in both modes: per-row gradients line up one to one
        _close(gr_p[k], gr_r[k], f"{name} row grads {k} step {n}")
      jax.tree.map(lambda a, b, name=name: _close(a, b, f"{name} param grads step {n}"), gp_p, gp_r)
  for name, rr, rp in zip(MODELS, runs["rows"], runs["partials"]):
    virt_r = rr["coll"].unshard_state(rr["state"][2])
    virt_p = rp["coll"].unshard_state(rp["state"][2])
    for stack, entry in virt_r.items():
      for k, v in entry.items():
        _close(virt_p[stack][k], v, f"{name} {stack}/{k} after 20 steps")
    jax.tree.map(
      lambda a, b, name=name: _close(a, b, f"{name} params"), rp["state"][0], rr["state"][0]
    )
  print(f"{strategy}: {time.time() - t0:.1f}s")


def test_hlo_collective_bytes_match_the_estimates():
  """The compiled exchanges move what `partials_bytes` and `sharded.comm_bytes` say (FM)."""
  model = models.build("fm", None, num_fields=len(VOCABS), embed_dim=K, num_dense=NUM_DENSE)
  batch, dense, _ = _batch(np.random.default_rng(1))
  hlo, routed = {}, {}
  for mode in ("rows", "partials"):
    coll = _coll("row_wise", K + 1)
    mesh = coll.placement.mesh
    emb = coll.shard_state(
      coll.init(jax.random.key(0)),
      lambda x, spec, mesh=mesh: jax.device_put(np.asarray(x), NamedSharding(mesh, spec)),
    )
    ids = _route(coll, batch, mode)
    if mode == "rows":
      routed = {k: np.asarray(v) for k, v in next(iter(ids.values())).items()}
      layout = next(iter(coll.layouts.values()))

    def loss(rows, ids, coll=coll, mode=mode):
      fwd = _rows_forward if mode == "rows" else _partials_forward
      return jnp.sin(fwd(coll, model, rows, ids, dense)).sum()  # cotangents not constant

    f = jax.jit(lambda emb, ids, loss=loss, coll=coll: jax.grad(loss)(coll.gather(emb, ids), ids))
    hlo[mode] = f.lower(emb, ids).compile().as_text()
  ops = {m: sorted({c.op for c in partials.collectives(h)}) for m, h in hlo.items()}
  assert ops == {"rows": ["all-to-all"], "partials": ["all-gather", "reduce-scatter"]}, ops
  assert partials.collective_bytes(hlo["partials"], N) == partials.partials_bytes(B, K + 1, N)
  assert partials.collective_bytes(hlo["rows"], N) == sharded.comm_bytes(layout, routed)
  # The estimate the planner uses: without repetition, FM on F fields moves N / F of the rows.
  est = partials.bytes_per_step(B, len(VOCABS), K, N, partial_terms.width("fm", 5, K))
  assert est["partials"] / est["rows"] == pytest.approx(N / len(VOCABS))
