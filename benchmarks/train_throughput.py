r"""Training throughput of a CTR model at the PyTorch baselines' shape.

  python benchmarks/train_throughput.py --model=deepfm [--batch_size=4096 --steps=30]

Shape (as ../shared/bench): 13 numeric + 26 categorical fields, one table of
1M rows per field, Zipf(1.1) ids, dim 16, MLP 400-400-400, lazy Adam (lr 1e-3)
on the tables and Adam on the dense part. A step is timed from the numpy batch
(host dedup and transfer run ahead in the loader thread, as in training) to
the loss on the host. Last line: ``{"examples_per_s": x, ...}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxctr import configs, data, metrics, train  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec  # noqa: E402


def make_split(rng, n, fields, vocab, num_dense, w_id):
  cat = np.stack([common.zipf_ids(rng, n, vocab) for _ in range(fields)], axis=1).astype(np.int32)
  num = rng.standard_normal((n, num_dense)).astype(np.float32)
  logit = -1.2 + 0.5 * num[:, 0] + sum(w_id[f][cat[:, f] % len(w_id[f])] for f in range(fields))
  label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
  return {"label": label, "cat": cat, "num": num}, logit


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--model", default="deepfm")
  p.add_argument("--batch_size", type=int, default=4096)
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--vocab", type=int, default=1_000_000)
  p.add_argument("--fields", type=int, default=26)
  p.add_argument("--dim", type=int, default=16)
  p.add_argument("--n_test", type=int, default=131072)
  p.add_argument("--hidden", default="400,400,400", help="MLP widths (e.g. 8 to time the rest)")
  args = p.parse_args()

  t0 = time.perf_counter()
  rng = np.random.default_rng(2024)
  w_id = [rng.normal(0, 0.25, 4099) for _ in range(args.fields)]  # planted per-id effect
  n_train = (args.warmup + args.steps) * args.batch_size
  train_split, _ = make_split(rng, n_train, args.fields, args.vocab, 13, w_id)
  test_split, test_logit = make_split(rng, args.n_test, args.fields, args.vocab, 13, w_id)
  feats = [FeatureSpec(f"C{i + 1}", "categorical", args.vocab) for i in range(args.fields)]
  feats += [FeatureSpec(f"I{i + 1}", "numeric") for i in range(13)]
  ds = data.from_arrays(
    "zipf_bench",
    {"train": train_split, "valid": test_split, "test": test_split},
    feats,
    oracle_auc={"test": metrics.auc(test_split["label"], test_logit)},
  )
  gen_s = time.perf_counter() - t0

  c = configs.base_config()
  c.model = args.model
  c.model_config.hidden = tuple(int(h) for h in args.hidden.split(","))
  c.embed_dim = args.dim
  c.batch_size = args.batch_size
  c.embedding.optimizer = "adam_lazy"
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  c.shuffle = False
  t0 = time.perf_counter()
  trainer = train.Trainer(c, dataset=ds)
  state = trainer.init_state()
  jax.block_until_ready(state)
  build_s = time.perf_counter() - t0

  times, losses = [], []
  batches = trainer.batches("train", train=True)
  for _ in range(args.warmup + args.steps):
    t = time.perf_counter()
    state, out = trainer.train_step(state, next(batches))
    losses.append(float(out["loss"]))  # blocks, like loss.item() in the baselines
    times.append(time.perf_counter() - t)
  batches.close()
  t0 = time.perf_counter()
  m = trainer.evaluate(state, "test")
  eval_s = time.perf_counter() - t0
  timed = np.asarray(times[args.warmup :])
  common.emit(
    {
      "system": "jaxctr",
      "model": args.model,
      "batch": args.batch_size,
      "examples_per_s": args.batch_size / float(np.median(timed)),
      "examples_per_s_mean": args.batch_size * len(timed) / float(timed.sum()),
      "step_ms_median": float(np.median(timed)) * 1e3,
      "step_ms_p10": float(np.percentile(timed, 10)) * 1e3,
      "step_ms_p90": float(np.percentile(timed, 90)) * 1e3,
      "test_auc": m["test_auc"],
      "test_logloss": m["test_logloss"],
      "oracle_auc": ds.info.oracle_auc["test"],
      "train_loss_last5": float(np.mean(losses[-5:])),
      "warmup_ms": [round(x * 1e3, 1) for x in times[: args.warmup]],
      "peak_rss_gb": common.peak_rss_gb(),
      "gen_s": gen_s,
      "build_s": build_s,
      "eval_s": eval_s,
      "table_bytes": trainer.collection.num_bytes(),
      "devices": jax.device_count(),
      "versions": {"jax": jax.__version__},
    }
  )


if __name__ == "__main__":
  main()
