r"""Embedding layer alone at TorchRec's ``torchrec_ebc.py`` shape: lookups/s from the host batch.

  python benchmarks/embedding_only.py [--batch=4096 --fields=26 --vocab=1000000 --dim=16]

The same work as ``../shared/bench/torchrec_ebc.py`` (TorchRec's fused
EmbeddingBagCollection with row-wise Adagrad), on the same ids (``synth.py``'s training
split, seed 2024, batch i = rows ``i*B .. (i+1)*B``): 26 tables of 1M rows x 16, one id per
(example, field), a fixed upstream gradient ``gy`` [B, F*D] (N(0, 0.01^2), as TorchRec's
script), and a row-wise Adagrad update (lr 0.01) of the touched rows. No MLP and no loss.

Each timed step starts from the host batch of ids (numpy [B, F]) and includes what
TorchRec's step includes and more: host deduplication (`EmbeddingCollection.prepare`), the
transfer of the unique ids and inverse indices, then (one jitted call, tables donated) the
gather, the [B, F*D] output, its backward against ``gy`` and the scatter of the updated rows
and accumulators; the clock stops when the new tables are ready. Last line:
``{"lookups_per_s": x, ...}`` with lookups/s = B * F / median step time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402


def shared_synth():
  """Imports ``synth`` from the PyTorch baselines' folder (../shared/bench of the checkout)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for d in (
    os.environ.get("JAXCTR_SHARED_BENCH", ""),
    os.path.join(root, "..", "shared", "bench"),
    os.path.join(root, "..", "..", "shared", "bench"),
  ):
    if d and os.path.exists(os.path.join(d, "synth.py")):
      sys.path.insert(0, os.path.abspath(d))
      return importlib.import_module("synth")
  raise SystemExit(
    "benchmarks: ../shared/bench/synth.py not found next to the checkout; "
    "set JAXCTR_SHARED_BENCH to the folder that holds it"
  )


def unique_per_batch(sparse: np.ndarray, batch: int, steps: int) -> float:
  """Mean over batches of the distinct (field, id) pairs: the rows a step touches."""
  n = []
  for i in range(steps):
    b = sparse[i * batch : (i + 1) * batch]
    n.append(sum(len(np.unique(b[:, f])) for f in range(b.shape[1])))
  return float(np.mean(n))


def main():
  synth = shared_synth()
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  synth.add_common_args(p)
  p.add_argument("--emb_lr", type=float, default=0.01)
  args = p.parse_args()
  args.n_test = 1
  _, tr, _, gen_s = synth.synth_from_args(args)
  F, V, D, B = args.fields, args.vocab, args.dim, args.batch

  t0 = time.perf_counter()
  feats = [FeatureSpec(f"C{i + 1}", "categorical", V) for i in range(F)]
  opt = OptimizerSpec("rowwise_adagrad", learning_rate=args.emb_lr)
  tables = [TableSpec(f"C{i + 1}", V, D, init_std=0.01, optimizer=opt) for i in range(F)]
  coll = EmbeddingCollection(feats, tables)
  state = coll.init(jax.random.key(args.seed))
  jax.block_until_ready(state)
  build_s = time.perf_counter() - t0
  gy = jnp.asarray(np.random.default_rng(0).normal(0, 1e-2, (B, F * D)), jnp.float32)

  def step(state, ids, t):
    def out(rows):
      return jnp.concatenate(list(coll.assemble(rows, ids).values()), axis=-1)  # [B, F*D]

    rows = coll.gather(state, ids)
    _, vjp = jax.vjp(out, rows)
    (g,) = vjp(gy)
    return coll.apply_gradients(state, ids, g, t)

  step = jax.jit(step, donate_argnums=(0,))
  probe = int(tr["sparse"][0, 0])
  stack = coll.stacks[0].name
  w0 = np.asarray(state[stack]["table"][probe]).copy()
  times = []
  for i in range(args.warmup + args.steps):
    t = time.perf_counter()
    host = tr["sparse"][i * B : (i + 1) * B]
    ids = jax.device_put(coll.prepare({"cat": host}))
    state = step(state, ids, jnp.int32(i + 1))
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
  updated = bool(np.abs(np.asarray(state[stack]["table"][probe]) - w0).max() > 0)
  st = synth.step_stats(times[args.warmup :], B)
  med_s = st["step_ms_median"] / 1e3
  common.emit(
    {
      "system": "jaxctr_embedding_rowwise_adagrad",
      "batch": B,
      "vocab": V,
      "fields": F,
      "dim": D,
      "lookups_per_s": B * F / med_s,
      "lookups_per_s_mean": st["ex_per_s_mean"] * F,
      "step_ms_median": st["step_ms_median"],
      "step_ms_p10": st["step_ms_p10"],
      "step_ms_p90": st["step_ms_p90"],
      "timed_steps": st["timed_steps"],
      "unique_ids_per_batch": unique_per_batch(tr["sparse"], B, args.warmup + args.steps),
      "rows_updated_check": updated,
      "warmup_ms": [round(x * 1e3, 1) for x in times[: args.warmup]],
      "gen_s": gen_s,
      "build_s": build_s,
      "peak_rss_gb": common.peak_rss_gb(),
      "devices": jax.device_count(),
      "versions": {"jax": jax.__version__},
    }
  )


if __name__ == "__main__":
  main()
