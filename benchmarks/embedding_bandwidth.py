r"""Embedding lookup + sparse update throughput and the memory bandwidth it reaches.

  python benchmarks/embedding_bandwidth.py [--rows=4000000 --dim=64 --batch=65536 \
      --fields=26 --zipf=1.1 --optimizer=adagrad --peak_gbps=0]

One stacked table of ``rows`` x ``dim`` fp32 rows with its optimizer slots on
the default device (GPU when there is one). Each step looks up ``batch`` x
``fields`` Zipf-skewed ids, deduplicated on the host ahead of time (as the
trainer's loader thread does, so hot ids never contend in a scatter), gathers
the distinct rows, and applies the sparse optimizer to them in place (donated
table). Steps are timed on the device only.

``bytes_per_s`` counts the unique rows' table and slot bytes read and written
per step, plus the ids; ``peak_fraction`` divides it by the device's memory
bandwidth: ``--peak_gbps``, else a table of known accelerators, else (CPU) a
measured large-array copy. Last line:
``{"lookups_per_s": x, "bytes_per_s": b, "peak_fraction": f, ...}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402

# HBM bandwidth in bytes/s by device_kind substring (vendor data sheets).
KNOWN_PEAK = {
  "H200": 4.8e12,
  "H100": 3.35e12,
  "A100": 2.0e12,
  "L4": 0.3e12,
  "V100": 0.9e12,
  "TPU v4": 1.2e12,
  "TPU v5 lite": 0.82e12,
  "TPU v5": 2.76e12,
  "TPU v6": 1.64e12,
}


def measured_copy_bandwidth(nbytes: int = 1 << 28) -> float:
  """Read + write bytes/s of a large on-device copy (x + 1), the practical peak."""
  x = jnp.zeros(nbytes // 4, jnp.float32)
  f = jax.jit(lambda a: a + 1.0, donate_argnums=0)
  x = f(x).block_until_ready()
  times = []
  for _ in range(5):
    t = time.perf_counter()
    x = f(x).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * nbytes / min(times)


def peak_bandwidth(dev, override_gbps: float) -> tuple[float, str]:
  if override_gbps:
    return override_gbps * 1e9, "flag"
  for k, v in KNOWN_PEAK.items():
    if k.lower() in dev.device_kind.lower():
      return v, f"datasheet ({k})"
  return measured_copy_bandwidth(), "measured copy"


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rows", type=int, default=4_000_000)
  p.add_argument("--dim", type=int, default=64)
  p.add_argument("--batch", type=int, default=65536)
  p.add_argument("--fields", type=int, default=26)
  p.add_argument("--zipf", type=float, default=1.1)
  p.add_argument("--optimizer", default="adagrad")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--batches", type=int, default=4, help="distinct prepared batches, cycled")
  p.add_argument("--peak_gbps", type=float, default=0.0)
  args = p.parse_args()
  dev = jax.devices()[0]
  per_field = args.rows // args.fields
  feats = [FeatureSpec(f"C{i}", "categorical", per_field) for i in range(args.fields)]
  opt = OptimizerSpec(args.optimizer, learning_rate=0.01)
  tables = [TableSpec(f"C{i}", per_field, args.dim, optimizer=opt) for i in range(args.fields)]
  coll = EmbeddingCollection(feats, tables)
  state = coll.init(jax.random.key(0))
  (stack,) = coll.stacks
  rng = np.random.default_rng(0)
  prepared = []
  for _ in range(args.batches):
    cat = np.stack(
      [common.zipf_ids(rng, args.batch, per_field, args.zipf) for _ in range(args.fields)], 1
    )
    prepared.append(jax.device_put(coll.prepare({"cat": cat})))
  uniq_rows = float(
    np.mean([int((np.asarray(b[stack.name]["uniq"]) < stack.rows).sum()) for b in prepared])
  )

  def step_fn(state, ids, step):
    rows = coll.gather(state, ids)
    # A stand-in gradient that depends on the rows (so nothing is folded away).
    grads = {k: 0.01 * v + 0.001 for k, v in rows.items()}
    return coll.apply_gradients(state, ids, grads, step)

  step = jax.jit(step_fn, donate_argnums=0)  # the table is updated in place
  for i in range(args.batches):  # compile every padded shape
    state = step(state, prepared[i], jnp.int32(i + 1))
  jax.block_until_ready(state)
  t = time.perf_counter()
  for i in range(args.steps):
    state = step(state, prepared[i % args.batches], jnp.int32(i + 1))
  jax.block_until_ready(state)
  dt = (time.perf_counter() - t) / args.steps
  slot_width = sum(v.shape[1] for k, v in state[stack.name].items() if k != "table")
  row_bytes = 4 * (args.dim + slot_width)
  moved = 2 * uniq_rows * row_bytes + 4 * args.batch * args.fields  # read + write rows, ids
  peak, source = peak_bandwidth(dev, args.peak_gbps)
  common.emit(
    {
      "lookups_per_s": args.batch * args.fields / dt,
      "bytes_per_s": moved / dt,
      "peak_fraction": moved / dt / peak,
      "peak_bytes_per_s": peak,
      "peak_source": source,
      "step_ms": dt * 1e3,
      "unique_rows_per_step": uniq_rows,
      "device": dev.device_kind,
      "rows": stack.rows,
      "dim": args.dim,
      "optimizer": args.optimizer,
      "zipf": args.zipf,
    }
  )


if __name__ == "__main__":
  main()
