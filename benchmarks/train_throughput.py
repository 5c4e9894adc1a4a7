r"""Training throughput of a CTR model at the PyTorch baselines' shape, on their data.

  python benchmarks/train_throughput.py --model=deepfm [--batch=4096 --steps=30]

Data: ``../shared/bench/synth.py`` (imported; seed 2024), so the ids, numeric features and
labels are exactly those the PyTorch baselines train on: 13 numeric + 26 categorical fields,
one table of 1M rows per field, Zipf(1.1) ids, batch i = rows ``i*B .. (i+1)*B`` of the
training split. Model: dim 16, MLP 400-400-400, lazy Adam (lr 1e-3) on the tables and Adam
on the dense part.

The clock starts where the baselines' does, at the host batch (numpy): it includes host
deduplication (`EmbeddingCollection.prepare`), the transfer of the batch and the ids, the
jitted step, and the loss read back on the host (``loss.item()`` in the baselines). (In
training the loader thread runs dedup and transfer ahead of the step, so a run's
examples/s can be higher than this.) Last line: ``{"examples_per_s": x,
"unique_ids_per_batch": u, ...}``, u = distinct (field, id) pairs of a batch, the rows one
step touches, which is the same for every system on these ids.
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
import embedding_only  # noqa: E402

from jaxctr import configs, data, metrics, train  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec  # noqa: E402


def main():
  synth = embedding_only.shared_synth()
  p = argparse.ArgumentParser()
  synth.add_common_args(p)  # --batch --steps --warmup --vocab --fields --dim --seed --n_test --lr
  p.add_argument("--model", default="deepfm")
  p.add_argument("--hidden", default="400,400,400", help="MLP widths (e.g. 8 to time the rest)")
  args = p.parse_args()
  args.batch_size = args.batch

  _, tr, te, gen_s = synth.synth_from_args(args)

  def split(d):
    return {"label": d["label"], "cat": d["sparse"].astype(np.int32), "num": d["dense"]}

  train_split, test_split = split(tr), split(te)
  feats = [FeatureSpec(f"C{i + 1}", "categorical", args.vocab) for i in range(args.fields)]
  feats += [FeatureSpec(f"I{i + 1}", "numeric") for i in range(13)]
  ds = data.from_arrays(
    "zipf_bench",
    {"train": train_split, "valid": test_split, "test": test_split},
    feats,
    oracle_auc={"test": metrics.auc(test_split["label"], te["logit"])},
  )

  c = configs.base_config()
  c.model = args.model
  c.model_config.hidden = tuple(int(h) for h in args.hidden.split(","))
  c.embed_dim = args.dim
  c.batch_size = args.batch_size
  c.embedding.optimizer = "adam_lazy"
  c.embedding.learning_rate = args.lr
  c.optimizer.learning_rate = args.lr
  c.shuffle = False
  t0 = time.perf_counter()
  trainer = train.Trainer(c, dataset=ds)
  state = trainer.init_state()
  jax.block_until_ready(state)
  build_s = time.perf_counter() - t0

  times, losses = [], []
  b = args.batch_size
  for i in range(args.warmup + args.steps):
    host = {k: v[i * b : (i + 1) * b] for k, v in train_split.items()}
    t = time.perf_counter()
    state, out = trainer.train_step(state, trainer._device_batch(host))
    losses.append(float(out["loss"]))  # blocks, like loss.item() in the baselines
    times.append(time.perf_counter() - t)
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
      "unique_ids_per_batch": embedding_only.unique_per_batch(
        tr["sparse"], b, args.warmup + args.steps
      ),
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
