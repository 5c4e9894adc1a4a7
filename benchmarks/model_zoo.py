r"""Trains every registered model on one synthetic dataset and prints a JSON summary.

  python benchmarks/model_zoo.py                      # all models, 300k training rows
  python benchmarks/model_zoo.py --models=fm,dcnv2    # a subset
  python benchmarks/model_zoo.py --smoke              # tiny data and models: seconds per model
  python benchmarks/model_zoo.py | tail -1 | python benchmarks/zoo_table.py

Each model runs with its ``experiments/synthetic/<model>.py`` configuration (``:smoke`` with
``--smoke``) on the same Criteo-shaped synthetic data (26 categorical fields, 13 numeric),
one epoch at batch 1024 (~290 steps; the configs' own batch of 4096 would leave ~70), without
checkpoints. Sized so that all models finish in under 30 minutes on 2 CPU cores. The LAST line of stdout is one JSON object::

  {"<model>": {"test_auc": a, "test_logloss": l, "params": n, "examples_per_s": x, ...}, ...}

``params`` counts the dense (non-embedding) parameters; ``table_bytes`` is the size of the
embedding tables. A model that fails reports ``{"error": "..."}`` instead, so one broken
model does not lose the others' results.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jaxctr import models  # noqa: E402
from jaxctr.data import builders, synthetic  # noqa: E402


def experiment_config(model: str, smoke: bool):
  path = os.path.join(ROOT, "experiments", "synthetic", f"{model}.py")
  spec = importlib.util.spec_from_file_location(f"zoo_{model}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("smoke" if smoke else None)


def dataset_config(rows: int) -> builders.CtrConfig:
  # Valid/test at a tenth of train each, as in the built-in configs.
  eval_rows = max(rows // 10, 1000)
  return builders.CtrConfig(
    name=f"zoo_bench_{rows}",
    sizes=(rows, eval_rows, eval_rows),
    synthetic=synthetic.SyntheticConfig(),
  )


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--models", default="", help="comma-separated registry names (default: all)")
  p.add_argument("--rows", type=int, default=300_000, help="training rows")
  p.add_argument("--epochs", type=int, default=1)
  # The configs' batch of 4096 is sized for 1M rows: on 300k it would leave ~70 steps.
  p.add_argument("--batch_size", type=int, default=1024, help="0: each config's own")
  p.add_argument("--data_dir", default="~/.cache/jaxctr/tfds")
  p.add_argument("--workdir", default="", help="default: a temporary directory")
  p.add_argument("--smoke", action="store_true", help="smoke configs and 20k rows")
  return p.parse_args(argv)


def main(argv=None) -> dict:
  args = parse_args(argv)
  names = [m for m in args.models.split(",") if m] or models.registered()
  unknown = sorted(set(names) - set(models.registered()))
  if unknown:
    raise SystemExit(f"unknown models {unknown}; registered: {models.registered()}")
  rows = 20_000 if args.smoke else args.rows

  from jaxctr import train  # imported late: the trainer pulls in the whole input pipeline

  data_dir = os.path.expanduser(args.data_dir)
  t0 = time.perf_counter()
  dataset = builders.load_dataset(
    "synthetic_ctr", data_dir, builder_kwargs={"config": dataset_config(rows)}
  )
  print(f"dataset ready in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
  workroot = args.workdir or tempfile.mkdtemp(prefix="model_zoo_")
  results = {}
  for name in names:
    c = experiment_config(name, args.smoke)
    c.num_epochs = args.epochs
    c.total_steps = 0
    if args.batch_size:
      c.batch_size = args.batch_size
    c.checkpoint.enabled = False
    c.progress_bar = False
    c.early_stopping.patience = 0
    t = time.perf_counter()
    try:
      r = train.train_and_evaluate(c, os.path.join(workroot, name), dataset=dataset)
    except Exception as e:  # keep going: one broken model must not lose the other results
      traceback.print_exc()
      results[name] = {"error": f"{type(e).__name__}: {e}"}
      continue
    results[name] = {
      "test_auc": float(r["test_auc"]),
      "test_logloss": float(r["test_logloss"]),
      "params": int(r.get("dense_params", 0)),
      "examples_per_s": float(r.get("examples_per_s", 0.0)),
      "table_bytes": int(r.get("table_bytes", 0)),
      "oracle_auc": float(r["oracle_auc"]) if "oracle_auc" in r else None,
      "wall_s": round(time.perf_counter() - t, 1),
    }
    print(f"{name}: {json.dumps(results[name])}", file=sys.stderr)
  print(json.dumps(results))
  return results


if __name__ == "__main__":
  main()
