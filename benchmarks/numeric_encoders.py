"""DeepFM on numeric-heavy synthetic data with each numeric-feature encoder.

The LAST stdout line is ``{"<encoder>": {"test_auc": a, "test_logloss": l}, ...}``.

Usage: python benchmarks/numeric_encoders.py [--quick] [--encoders raw,autodis,...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from embedding_methods import base, make_dataset

from jaxctr import train
from jaxctr.data import synthetic

ENCODERS = (
  "raw",
  "log",
  "field",
  "equal_width",
  "equal_frequency",
  "log_bucket",
  "tree",
  "bottom_mlp",
  "autodis",
)


def main(argv=None):
  ap = argparse.ArgumentParser()
  ap.add_argument("--quick", action="store_true", help="small data, one short epoch")
  ap.add_argument("--encoders", default=",".join(ENCODERS))
  ap.add_argument("--temperature", type=float, default=None, help="AutoDis temperature")
  args = ap.parse_args(argv)
  sizes = (60_000, 10_000, 20_000) if args.quick else (300_000, 30_000, 60_000)
  scfg = synthetic.numeric_heavy(max_vocab=2_000)
  ds = make_dataset(scfg, sizes)
  out = {}
  for name in args.encoders.split(","):
    c = base(args.quick)
    c.numeric.encoder = name
    if args.temperature is not None:
      c.numeric.temperature = args.temperature
    with tempfile.TemporaryDirectory() as wd:
      r = train.train_and_evaluate(c, wd, dataset=ds)
    out[name] = {
      "test_auc": round(float(r["test_auc"]), 5),
      "test_logloss": round(float(r["test_logloss"]), 5),
    }
    print(name, json.dumps(out[name]), file=sys.stderr, flush=True)
  print(json.dumps(out))


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
