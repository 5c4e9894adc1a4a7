"""DeepFM on long-tailed synthetic data with each categorical embedding method.

Ids are re-encoded by descending training count (as prepared vocabularies are),
so double hashing's "hot" ids are the frequent ones. The LAST stdout line is

  {"<method>": {"bytes": b, "test_auc": a, "test_logloss": l, "examples_per_s": x}, ...}

where bytes counts tables, their optimizer slots and per-row scales, plus the
DHE MLP parameters with their Adam moments (12 bytes per parameter).

Usage: python benchmarks/embedding_methods.py [--quick] [--methods full,qr,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
from jaxctr import configs, data, train  # noqa: E402
from jaxctr.data import synthetic  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec  # noqa: E402

METHODS = {
  "full": {},
  "hashing": {"method": "hashing", "bucket_fraction": 0.25},
  # Most of the budget on own rows for the hot ids: on this data the fewer the shared
  # buckets, the better (1%: -0.0026 AUC, 5%: -0.0035, 15%: -0.0066; experiments/README.md).
  "double_hashing": {"method": "double_hashing", "hot_fraction": 0.235, "bucket_fraction": 0.005},
  "qr": {"method": "qr", "bucket_fraction": 0.1},
  # The paper's k = 1024 hashes; a narrow decoder keeps it under a fifth of full's bytes.
  "dhe": {"method": "dhe", "dhe_k": 1024, "dhe_hidden": (28,)},
  "fp16": {"dtype": "float16"},
  "bf16": {"dtype": "bfloat16"},
  "int16": {"dtype": "int16"},
  "int8": {"dtype": "int8"},
}
_SMALL_VOCAB = 200  # features this small stay full tables: hashing them saves nothing


def make_dataset(scfg: synthetic.SyntheticConfig, sizes, prepare_numeric: bool = True):
  """In-memory prepared dataset: frequency-ranked ids, standardised signed-log1p numbers."""
  gen = synthetic.SyntheticGenerator(scfg)
  raw = {s: gen.sample(n, s) for s, n in zip(("train", "valid", "test"), sizes, strict=True)}
  feats, cats = [], {s: np.zeros_like(d["cat"]) for s, d in raw.items()}
  for f, v in enumerate(gen.vocab_sizes):
    counts = np.bincount(raw["train"]["cat"][:, f], minlength=v + 1)
    order = np.argsort(-counts[1:], kind="stable") + 1  # most frequent first
    rank = np.zeros(v + 1, np.int64)
    seen = counts[order] > 0
    rank[order[seen]] = np.arange(1, seen.sum() + 1)  # unseen in training -> OOV 0
    for s in raw:
      cats[s][:, f] = rank[raw[s]["cat"][:, f]]
    feats.append(FeatureSpec(f"C{f + 1}", "categorical", int(seen.sum()) + 1))
  logx = np.log1p(raw["train"]["num"].astype(np.float64))
  mean, std = logx.mean(0), logx.std(0) + 1e-6
  feats += [FeatureSpec(f"I{j + 1}", "numeric") for j in range(scfg.num_numeric)]
  splits = {}
  for s, d in raw.items():
    x = np.log1p(d["num"].astype(np.float64))
    x = (x - mean) / std if prepare_numeric else x
    splits[s] = {"label": d["label"], "cat": cats[s].astype(np.int32), "num": x.astype(np.float32)}
  oracle = {s: float(synthetic.auc(d["label"], d["logit"])) for s, d in raw.items()}
  ds = data.from_arrays("bench", splits, feats, oracle_auc=oracle)
  stats = tuple(
    {"name": f"I{j + 1}", "log1p_mean": float(mean[j]), "log1p_std": float(std[j])}
    for j in range(scfg.num_numeric)
  )
  ds.info = dataclasses.replace(ds.info, numeric_stats=stats)
  return ds


def base(quick: bool):
  c = configs.base_config()
  c.model = "deepfm"
  c.model_config.hidden = (64, 64)
  c.embed_dim = 16
  c.batch_size = 1024
  c.eval_batch_size = 16384
  c.num_epochs = 1
  c.progress_bar = False
  c.checkpoint.enabled = False
  c.log_every_steps = 50
  c.embedding.learning_rate = 0.01 if quick else 0.005
  return c


def dense_bytes(state) -> int:
  """Encoder (DHE/numeric) parameters plus their two Adam moments."""
  enc = state["params"]["encoder"] if "encoder" in state["params"] else {}
  return 12 * sum(int(np.prod(x.shape)) for x in jax.tree.leaves(enc))


def run(config, ds) -> dict:
  with tempfile.TemporaryDirectory() as wd:
    r = train.train_and_evaluate(config, wd, dataset=ds)
  return {
    "bytes": int(r["table_bytes"] + dense_bytes(r["final_state"])),
    "test_auc": round(float(r["test_auc"]), 5),
    "test_logloss": round(float(r["test_logloss"]), 5),
    "examples_per_s": round(float(r["examples_per_s"]), 1),
  }


def main(argv=None):
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true", help="small data, one short epoch")
  ap.add_argument("--methods", default=",".join(METHODS))
  args = ap.parse_args(argv)
  sizes = (60_000, 10_000, 20_000) if args.quick else (300_000, 30_000, 60_000)
  scfg = synthetic.SyntheticConfig(min_vocab=20, max_vocab=20_000 if args.quick else 100_000)
  ds = make_dataset(scfg, sizes)
  big = [
    f.name for f in ds.info.features if f.kind == "categorical" and f.vocab_size > _SMALL_VOCAB
  ]
  out = {}
  for name in args.methods.split(","):
    c = base(args.quick)
    m = METHODS[name]
    if "dtype" in m:  # storage precision applies to every table
      c.embedding.dtype = m["dtype"]
    elif m:
      c.embedding.per_feature = {f: dict(m) for f in big}
    out[name] = run(c, ds)
    print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
  print(json.dumps(out))


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
