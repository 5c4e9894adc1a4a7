r"""Sparse embedding step time versus vocabulary size.

  python benchmarks/sparse_step.py [--batch=4096 --fields=26 --dim=16 --optimizer=rowwise_adagrad]

One step = gather the batch's unique rows, a gradient, and the row-wise
Adagrad update scattered back into the donated table. Ids (Zipf 1.1) and
dedup are the same at every size, so only the table size changes. Last line:
``{"step_seconds": {"262144": s, ..., "16777216": s}, "ratio_largest_over_smallest": r}``.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--batch", type=int, default=4096)
  p.add_argument("--fields", type=int, default=26)
  p.add_argument("--dim", type=int, default=16)
  p.add_argument("--optimizer", default="rowwise_adagrad")
  p.add_argument("--log2_sizes", default="18,20,22,24")
  p.add_argument("--steps", type=int, default=20)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  # All fields share one table of `rows` rows; ids drawn over the smallest size so the
  # batch (and its unique count) is identical at every table size.
  sizes = [2 ** int(s) for s in args.log2_sizes.split(",")]
  ids = common.zipf_ids(rng, args.batch * args.fields, sizes[0]).reshape(args.batch, args.fields)
  results = {}
  for rows in sizes:
    feats = [FeatureSpec(f"c{i}", "categorical", rows, table="t") for i in range(args.fields)]
    opt = OptimizerSpec(args.optimizer, learning_rate=0.01)
    coll = EmbeddingCollection(
      feats, [TableSpec("t", rows, args.dim, init_std=0.01, optimizer=opt)]
    )
    state = coll.init(jax.random.key(0))
    dev_ids = jax.device_put(coll.prepare({"cat": ids}))

    @jax.jit
    def step(state, ids):
      rows_ = coll.gather(state, ids)
      g = jax.grad(lambda r: sum(jnp.sum(v * v) for v in coll.assemble(r, ids).values()))(rows_)
      return coll.apply_gradients(state, ids, g, jnp.int32(1))

    step = jax.jit(step.__wrapped__, donate_argnums=(0,))
    box = [state]

    def run():
      box[0] = step(box[0], dev_ids)
      jax.block_until_ready(box[0])

    times = common.time_steps(run, args.steps, warmup=3)
    results[str(rows)] = float(np.median(times))
    print(f"rows={rows}: {results[str(rows)] * 1e3:.2f} ms/step", file=sys.stderr)
    box.clear()
  vals = list(results.values())
  common.emit(
    {
      "step_seconds": results,
      "ratio_largest_over_smallest": vals[-1] / vals[0],
      "unique_ids_per_step": int(len(np.unique(ids))),
      "lookups_per_step": int(ids.size),
      "optimizer": args.optimizer,
    }
  )


if __name__ == "__main__":
  main()
