r"""Vocabulary-free hashed ids against vocabulary + OOV ids under id drift.

  python benchmarks/drift.py [--train_rows 300000] [--work_dir /tmp/jaxctr_drift]

Data (synthetic_ctr, `SyntheticConfig(drift=...)`): from the middle of the training split
on, and in all of validation and test, a `--drift` fraction of every field's draws comes
from new ids with their own planted weights. Two preparations of the same rows:

* `vocab_oov`: vocabularies counted over the training rows before the drift
  (`vocab_rows`: a vocabulary refreshed less often than the model trains, as in
  production); every newer id maps to the OOV id 0, in training and at test time.
* `raw_hash`: every feature declared `hash`: no vocabulary; new ids get their own hashed id
  as soon as they appear (the hot set of double hashing comes from the count-min sketch).

DHE and double hashing (equal table sizes per field in both arms) train FM models on each;
the learning rate is chosen on validation AUC (early stopping keeps the best evaluation),
and the test AUC of that choice is reported. `prepare_rows_per_s` times preparing the same
rows written as Criteo text (parse, statistics, encode, store) with vocabularies and with
every feature hashed, alternating, --prep_reps times each (medians, spread alongside), on
text with Criteo-like cardinalities (up to --prep_max_vocab ids per field).

Last stdout line: {"dhe": {"vocab_oov": auc, "raw_hash": auc}, "double_hashing": {...},
"prepare_rows_per_s": {"vocab": r1, "hash": r2}, ...}
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxctr import configs, train  # noqa: E402
from jaxctr.data import builders, synthetic  # noqa: E402


def data_config(args) -> synthetic.SyntheticConfig:
  return synthetic.SyntheticConfig(drift=args.drift, drift_start=args.train_rows // 2)


def overrides(arm: str, args) -> dict:
  if arm == "vocab_oov":
    return {"vocab_rows": args.train_rows // 2}
  return {"hash_features": ("all",), "hash_hot_ids": 256}


def run(arm: str, method: str, lr: float, args, gen) -> dict:
  c = configs.base_config()
  c.dataset.data_dir = os.path.join(args.work_dir, "tfds")
  n = args.train_rows
  c.dataset.builder_kwargs = {
    "config": builders.CtrConfig(
      name=f"drift_{n}", sizes=(n, n // 5, n // 5), synthetic=data_config(args)
    )
  }
  o = overrides(arm, args)
  if "vocab_rows" in o:
    c.dataset.vocab_rows = o["vocab_rows"]
  else:
    c.dataset.hash_features = "all"
    c.dataset.hash_hot_ids = o["hash_hot_ids"]
  c.model = "fm"
  c.embed_dim = 16
  c.embedding.method = method
  # Equal capacity in both arms: per field, buckets and hot rows from the field's base size.
  c.embedding.per_feature = {
    f"C{i + 1}": {"num_buckets": max(2, v // 2), "hot_ids": max(1, v // 20)}
    for i, v in enumerate(gen.vocab_sizes)
  }
  c.embedding.dhe_k = args.dhe_k
  c.embedding.dhe_hidden = (args.dhe_hidden,)
  c.embedding.learning_rate = lr
  c.optimizer.learning_rate = lr
  c.batch_size = 2048
  c.eval_batch_size = 16384
  c.num_epochs = args.epochs
  c.early_stopping.patience = 1
  c.progress_bar = False
  c.log_every_steps = 10_000
  c.checkpoint.async_save = False
  wd = os.path.join(args.work_dir, "runs", f"{arm}_{method}_{lr}")
  shutil.rmtree(wd, ignore_errors=True)
  out = train.train_and_evaluate(c, wd)
  return {
    "valid_auc": out["valid_auc"],
    "test_auc": out["test_auc"],
    "lr": lr,
    "oracle_test_auc": out.get("oracle_auc"),
  }


def prepare_rate(args) -> dict:
  """Rows/s of preparing the same Criteo text with vocabularies and with hashed features.

  The text has Criteo-like cardinalities (fields of 10 to --prep_max_vocab ids): the cost
  of counting vocabularies grows with them.
  """
  gen = synthetic.SyntheticGenerator(synthetic.SyntheticConfig(max_vocab=args.prep_max_vocab))
  raw = os.path.join(args.work_dir, "raw")
  os.makedirs(raw, exist_ok=True)
  path = os.path.join(raw, "train.txt")
  if not os.path.exists(path):
    data = gen.sample(args.prep_rows, "train")
    synthetic.write_criteo_tsv(path, gen, data, missing_rate=0.05)
  rates: dict[str, list[float]] = {"vocab": [], "hash": []}
  for r in range(args.prep_reps):
    for kind in ("vocab", "hash") if r % 2 == 0 else ("hash", "vocab"):
      d = os.path.join(args.work_dir, f"prep_{kind}")
      shutil.rmtree(d, ignore_errors=True)
      ov = {"min_count": 1} if kind == "vocab" else {"hash_features": ("all",)}
      t = time.perf_counter()
      ds = builders.load_dataset(
        "criteo", d, manual_dir=raw, builder_kwargs={"config": "default"}, overrides=ov
      )
      rates[kind].append(sum(ds.info.num_examples.values()) / (time.perf_counter() - t))
      shutil.rmtree(d, ignore_errors=True)
  return rates


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--train_rows", type=int, default=300_000)
  p.add_argument("--drift", type=float, default=0.3)
  p.add_argument("--epochs", type=int, default=3)
  p.add_argument("--lrs", default="0.003,0.01")
  p.add_argument("--methods", default="dhe,double_hashing")
  p.add_argument("--dhe_k", type=int, default=128)
  p.add_argument("--dhe_hidden", type=int, default=64)
  p.add_argument("--prep_rows", type=int, default=400_000)
  p.add_argument("--prep_reps", type=int, default=2)
  p.add_argument("--prep_max_vocab", type=int, default=1_000_000)
  p.add_argument("--work_dir", default="/tmp/jaxctr_drift")
  p.add_argument("--parts", default="auc,prepare", help="auc and/or prepare")
  args = p.parse_args()
  logging.set_verbosity(logging.WARNING)
  gen = synthetic.SyntheticGenerator(data_config(args))
  result: dict = {}
  runs = []
  parts = args.parts.split(",")
  for method in args.methods.split(",") if "auc" in parts else ():
    result[method] = {}
    for arm in ("vocab_oov", "raw_hash"):
      tried = [run(arm, method, float(lr), args, gen) for lr in args.lrs.split(",")]
      best = max(tried, key=lambda t: t["valid_auc"])  # chosen on validation only
      result[method][arm] = best["test_auc"]
      runs.append({"method": method, "arm": arm, "chosen_lr": best["lr"], "tried": tried})
  if "prepare" in parts:
    rates = prepare_rate(args)
    result["prepare_rows_per_s"] = {k: float(np.median(v)) for k, v in rates.items()}
    result["prepare_rows_per_s_all"] = rates
  if runs:
    result["runs"] = runs
    result["oracle_test_auc"] = runs[0]["tried"][0]["oracle_test_auc"]
  result["settings"] = {k: v for k, v in vars(args).items() if k != "work_dir"}
  result["load_avg_1m"] = os.getloadavg()[0]
  common.emit(result)


if __name__ == "__main__":
  main()
