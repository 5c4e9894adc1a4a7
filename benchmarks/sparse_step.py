r"""Sparse embedding step time versus vocabulary size, for one sparse optimizer.

  python benchmarks/sparse_step.py --optimizer=adam --ids=spread [--dist=zipf --batch=4096]

One step (jitted, table and slots donated; the ids deduplicated and on the device
beforehand, as the training loop's loader thread does) = the gather of the unique rows, a gradient, and the optimizer's update scattered
back. Every size sees the same multiset of id *ranks* (Zipf(1.1) or uniform over the
smallest size), so the number of unique rows per step is identical and only the table
changes:

* ``--ids=touched``: rank r is row r, so every size touches only its first 2^18 rows (warm
  caches and TLB: a lower bound);
* ``--ids=spread``: rank r is row ``(r * a + c) mod rows`` (a bijection with ``a`` coprime to
  ``rows``), so the touched rows are scattered over the whole table, with the cache and TLB
  misses a real vocabulary causes.

A flat curve means the step costs O(unique ids), not O(vocabulary). Last line:
``{"step_seconds": {"262144": s, ..., "16777216": s}, ...}`` (median of ``--steps`` steps).
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
import common  # noqa: E402

from jaxctr.embeddings import optimizers  # noqa: E402
from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402


def ranks(rng, n: int, vocab: int, dist: str) -> np.ndarray:
  """``n`` popularity ranks in [0, vocab): Zipf(1.1) or uniform."""
  if dist == "uniform":
    return rng.integers(0, vocab, n)
  w = np.arange(1, vocab + 1, dtype=np.float64) ** -1.1
  cdf = np.cumsum(w) / w.sum()
  return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), vocab - 1)


def spread(r: np.ndarray, rows: int) -> np.ndarray:
  """Rank -> row by a bijection of [0, rows) that scatters neighbouring ranks."""
  a = int(rows * 0.6180339887) | 1
  while np.gcd(a, rows) != 1:
    a += 2
  return ((r.astype(np.int64) * a + 12345) % rows).astype(np.int64)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=4096)
  p.add_argument("--fields", type=int, default=26)
  p.add_argument("--dim", type=int, default=16)
  p.add_argument("--optimizer", default="rowwise_adagrad", choices=sorted(optimizers.OPTIMIZERS))
  p.add_argument("--ids", default="spread", choices=("touched", "spread"))
  p.add_argument("--dist", default="zipf", choices=("zipf", "uniform"))
  p.add_argument("--log2_sizes", default="18,20,22,24")
  p.add_argument("--steps", type=int, default=20)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  sizes = [2 ** int(s) for s in args.log2_sizes.split(",")]
  # Several batches so that the spread ids do not sit in cache from the previous step.
  n_batches = 4
  r = ranks(rng, n_batches * args.batch * args.fields, sizes[0], args.dist)
  r = r.reshape(n_batches, args.batch, args.fields)
  results, uniques = {}, []
  for rows in sizes:
    feats = [FeatureSpec(f"c{i}", "categorical", rows, table="t") for i in range(args.fields)]
    opt = OptimizerSpec(args.optimizer, learning_rate=0.01)
    coll = EmbeddingCollection(
      feats, [TableSpec("t", rows, args.dim, init_std=0.01, optimizer=opt)]
    )
    state = coll.init(jax.random.key(0))
    host = [spread(b, rows) if args.ids == "spread" else b for b in r]
    uniques = [len(np.unique(b)) for b in host]
    dev_ids = [jax.device_put(coll.prepare({"cat": b})) for b in host]

    def step(state, ids, t):
      rows_ = coll.gather(state, ids)
      g = jax.grad(lambda x: sum(jnp.sum(v * v) for v in coll.assemble(x, ids).values()))(rows_)
      return coll.apply_gradients(state, ids, g, t)

    step = jax.jit(step, donate_argnums=(0,))
    box = [state, 0]

    def run():
      box[1] += 1
      box[0] = step(box[0], dev_ids[box[1] % n_batches], jnp.int32(box[1]))
      jax.block_until_ready(box[0])

    t0 = time.perf_counter()
    times = common.time_steps(run, args.steps, warmup=3)
    results[str(rows)] = float(np.median(times))
    print(
      f"rows={rows}: {results[str(rows)] * 1e3:.2f} ms/step (p10-p90 "
      f"{np.percentile(times, 10) * 1e3:.2f}-{np.percentile(times, 90) * 1e3:.2f}; "
      f"{time.perf_counter() - t0:.0f} s)",
      file=sys.stderr,
    )
    box.clear()
  vals = list(results.values())
  common.emit(
    {
      "step_seconds": results,
      "ratio_largest_over_smallest": vals[-1] / vals[0],
      "unique_ids_per_step": int(np.mean(uniques)),
      "lookups_per_step": args.batch * args.fields,
      "optimizer": args.optimizer,
      "ids": args.ids,
      "dist": args.dist,
    }
  )


if __name__ == "__main__":
  main()
