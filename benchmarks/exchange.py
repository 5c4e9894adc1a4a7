r"""Rows vs partials exchange of sharded tables: bytes from the compiled HLO, and examples/s.

  python benchmarks/exchange.py [--quick] [--steps=4 --rounds=3]

For every case (model, strategy, fields F, dim k, devices N, batch B) both exchanges
compile the same training step: gather, forward, backward to rows and dense
parameters, sparse lazy-Adam row update, dense Adam. ``bytes_*`` sum the
collectives of the step's compiled, SPMD-partitioned HLO (`partials.collective_bytes`:
ring algorithms, all devices, forward and backward): the exchange itself (rows:
all-to-alls; partials: reduce-scatter and its mirror all-gather) plus the dense
gradients' all-reduce, which both modes share; ``exchange_bytes_*`` leave that out.
Ids: F Zipf(1.1) fields, long-tailed vocabularies (vocab / 2^(i mod 6)), so the rows
exchange profits from repetition as it would on Criteo-like data.

Examples/s: ``rounds`` alternating (rows, partials) blocks of ``steps`` timed steps
after a warm-up on N fake CPU devices sharing this machine's cores: the compute
partials add (owners work on the global batch) shows here, the network savings do
not. ``criteo_fm_reduction`` = 1 - bytes_partials / bytes_rows for FM, row_wise,
F = 26, k = 16, N = 8, B = 4096. ``crossover`` lists, per swept axis, the first
value at which partials stop paying (exchange bytes). Last stdout line: the JSON result.
"""

from __future__ import annotations

import os

if os.environ.get("EXCHANGE_REAL_DEVICES") != "1":  # benchmarks/gpu_exchange_check.py sets it
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from jaxctr import models, parallel  # noqa: E402
from jaxctr.embeddings import partials, sharded  # noqa: E402
from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402
from jaxctr.models import base, partial_terms  # noqa: E402

VOCAB = 100_000
NUM_DENSE = 13
HIDDEN = (400, 400, 400)


def _collection(strategy, fields, width, devices):
  opt = OptimizerSpec("adam_lazy", learning_rate=1e-3)
  names = [f"C{i + 1}" for i in range(fields)]
  vocabs = [max(VOCAB >> (i % 6), 100) for i in range(fields)]
  feats = [FeatureSpec(n, "categorical", v) for n, v in zip(names, vocabs)]
  tables = [TableSpec(n, v, width, init_std=0.01, optimizer=opt) for n, v in zip(names, vocabs)]
  coll = EmbeddingCollection(feats, tables, groups={n: strategy for n in names})
  mesh = parallel.make_mesh(parallel.load_recipe("row_wise"), jax.devices()[:devices])
  coll.shard(sharded.MeshPlacement(mesh, ("data",)), group_size=max(devices // 2, 1))
  return coll, names, vocabs


def _forward(mode, coll, names):
  def rows_fwd(model, rows, ids, dense):
    feats = coll.assemble(rows, ids)
    fields = jnp.stack([feats[n] for n in names], axis=1)
    linear = None
    if model.needs_linear:
      fields, linear = fields[..., :-1], fields[..., -1]
    return model(base.ModelInputs(fields=fields, dense=dense, linear=linear))

  def partials_fwd(model, rows, ids, dense):
    return partial_terms.logits(model, coll, rows, ids, dense)

  return rows_fwd if mode == "rows" else partials_fwd


class Case:
  """One (model, strategy, F, k, N, B) setup in one exchange mode: state, batches, jitted step."""

  def __init__(self, mode, model_name, strategy, fields, dim, devices, batch, seed=0):
    cls = models.get_model_class(model_name)
    width = dim + int(cls.needs_linear)
    self.coll, names, vocabs = _collection(strategy, fields, width, devices)
    if mode == "partials":
      partials.enable(self.coll)
    self.mode = mode
    mesh = self.coll.placement.mesh
    cfg = {"hidden": HIDDEN} if model_name in ("dnn", "deepfm") else {}
    model = models.build(
      model_name, cfg, num_fields=fields, embed_dim=dim, num_dense=NUM_DENSE, seed=seed
    )
    graphdef, params = nnx.split(model)
    rep = NamedSharding(mesh, P())
    batch_spec = NamedSharding(mesh, P(("data",)))
    tx = optax.adam(1e-3)
    params = jax.device_put(params, rep)
    self.state = [
      params,
      jax.device_put(tx.init(params), rep),
      self.coll.shard_state(
        self.coll.init(jax.random.key(seed)),
        lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec)),
      ),
    ]
    fwd = _forward(mode, self.coll, names)
    coll = self.coll

    def step(state, ids, dense, label):
      params, opt_state, emb = state
      rows = coll.gather(emb, ids)

      def loss(params, rows):
        logits = fwd(nnx.merge(graphdef, params), rows, ids, dense)
        return optax.sigmoid_binary_cross_entropy(logits, label).mean()

      lv, (gp, gr) = jax.value_and_grad(loss, argnums=(0, 1))(params, rows)
      upd, opt_state = tx.update(gp, opt_state, params)
      emb = coll.apply_gradients(emb, ids, gr, jnp.int32(1))
      return [optax.apply_updates(params, upd), opt_state, emb], lv

    self.step = jax.jit(step, donate_argnums=(0,))
    rng = np.random.default_rng(seed)
    cat = np.stack([common.zipf_ids(rng, batch, v) for v in vocabs], axis=1)
    dense = jax.device_put(rng.random((batch, NUM_DENSE), np.float32), batch_spec)
    label = jax.device_put((rng.random(batch) < 0.25).astype(np.float32), batch_spec)
    # One batch, reused: one exchange shape and one compile per mode.
    self.batch = (self._route({"cat": cat}), dense, label)

  def _route(self, batch):
    if self.mode == "partials":
      return partials.put_ids(
        self.coll, partials.prepare(self.coll, batch), self.coll.placement.mesh
      )
    return self.coll.put_ids(self.coll.prepare(batch), self.coll.placement.mesh)

  def hlo(self) -> str:
    return self.step.lower(self.state, *self.batch).compile().as_text()

  def run(self, steps: int) -> float:
    """Seconds for ``steps`` steps (blocking on the last)."""
    t = time.perf_counter()
    for _ in range(steps):
      self.state, lv = self.step(self.state, *self.batch)
    jax.block_until_ready(lv)
    return time.perf_counter() - t


def exchange_bytes(hlo: str, devices: int) -> tuple[int, int]:
  """(all collectives, all but all-reduce) bytes per step of a compiled step."""
  total = partials.collective_bytes(hlo, devices)
  dense = partials.collective_bytes(
    "\n".join(line for line in hlo.splitlines() if " all-reduce" in line), devices
  )
  return total, total - dense


def measure(model, strategy, fields, dim, devices, batch, *, steps, rounds, timed=True):
  cases = {m: Case(m, model, strategy, fields, dim, devices, batch) for m in ("rows", "partials")}
  out = {
    "model": model,
    "strategy": strategy,
    "fields": fields,
    "dim": dim,
    "devices": devices,
    "batch": batch,
  }
  for m, c in cases.items():
    total, exch = exchange_bytes(c.hlo(), devices)
    out[f"bytes_{m}"], out[f"exchange_bytes_{m}"] = total, exch
  if timed:
    for c in cases.values():
      c.run(2)  # compile + warm-up
    rates = {m: [] for m in cases}
    for _ in range(rounds):  # alternate, so drift in machine load hits both modes
      for m, c in cases.items():
        rates[m].append(batch * steps / c.run(steps))
    for m, r in rates.items():
      out[f"examples_per_s_{m}"] = float(np.median(r))
      out[f"examples_per_s_{m}_range"] = [float(min(r)), float(max(r))]
  else:
    out["examples_per_s_rows"] = out["examples_per_s_partials"] = None
  out["bytes_ratio"] = out["exchange_bytes_partials"] / max(out["exchange_bytes_rows"], 1)
  del cases
  return out


def grid(quick: bool):
  """(model, strategy, F, k, N, B, timed) cases: the Criteo shape, then one axis swept at a time."""
  crit = dict(fields=26, dim=16, devices=8, batch=4096)
  if quick:
    crit = dict(fields=26, dim=16, devices=8, batch=512)
  cases = []
  for m in ("lr", "fm", "fwfm", "dnn", "deepfm"):
    cases.append((m, "row_wise", crit, True))
  for s in ("table_wise", "table_row_wise", "column_wise"):
    cases.append(("fm", s, crit, True))
    cases.append(("deepfm", s, crit, not quick))
  sweeps = {
    "fields": (2, 4, 8, 16, 39),
    "devices": (2, 4),
    "batch": (256, 1024, 16384),
    "dim": (4, 64),
  }
  if quick:
    sweeps = {"fields": (4,), "devices": (2,), "batch": (128,)}
  for axis, values in sweeps.items():
    for v in values:
      for m in ("fm", "dnn"):
        if axis == "dim" or m == "fm" or axis == "fields":
          cases.append((m, "row_wise", dict(crit, **{axis: v}), False))
  return cases


def crossover(results):
  """Per model and swept axis (others at the Criteo shape): exchange-byte ratios, and the
  values where partials pay (ratio < 1) and where they stop paying."""
  out = {}
  base_shape = {k: results[0][k] for k in ("fields", "dim", "devices", "batch")}
  for m in ("fm", "dnn"):
    for axis in ("fields", "dim", "devices", "batch"):
      pts = sorted(
        (r[axis], r["bytes_ratio"])
        for r in results
        if r["model"] == m
        and r["strategy"] == "row_wise"
        and all(r[k] == v for k, v in base_shape.items() if k != axis)
      )
      if len(pts) > 1:
        out[f"{m}/{axis}"] = {
          "partials_over_rows": [[v, round(x, 4)] for v, x in pts],
          "partials_pay_at": [v for v, x in pts if x < 1],
          "partials_stop_paying_at": [v for v, x in pts if x >= 1],
        }
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="small batch, few cases (smoke run)")
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--rounds", type=int, default=3)
  args = p.parse_args()
  results = []
  for model, strategy, shape, timed in grid(args.quick):
    t = time.time()
    r = measure(model, strategy, **shape, steps=args.steps, rounds=args.rounds, timed=timed)
    results.append(r)
    rate = (
      f"{r['examples_per_s_rows']:.0f} vs {r['examples_per_s_partials']:.0f} ex/s"
      if timed
      else "untimed"
    )
    print(
      f"{model:>6} {strategy:>14} F={shape['fields']:<3} k={shape['dim']:<3} "
      f"N={shape['devices']} B={shape['batch']:<6} bytes rows {r['bytes_rows']:>11,} partials "
      f"{r['bytes_partials']:>11,} (exchange {r['exchange_bytes_rows']:>11,} vs "
      f"{r['exchange_bytes_partials']:>11,}) {rate} [{time.time() - t:.0f}s]",
      flush=True,
    )
  fm = next(r for r in results if r["model"] == "fm" and r["strategy"] == "row_wise")
  common.emit(
    {
      "cases": results,
      "criteo_fm_reduction": 1 - fm["bytes_partials"] / fm["bytes_rows"],
      "criteo_fm_exchange_reduction": 1 - fm["exchange_bytes_partials"] / fm["exchange_bytes_rows"],
      "crossover": crossover(results),
    }
  )


if __name__ == "__main__":
  main()
