r"""Trains every registered model on one synthetic dataset and prints a JSON summary.

  python benchmarks/model_zoo.py                      # all models, 200k training rows
  python benchmarks/model_zoo.py --models=fm,dcnv2    # a subset
  python benchmarks/model_zoo.py --smoke              # tiny data and models: seconds per model
  python benchmarks/model_zoo.py | tail -1 | python benchmarks/zoo_table.py

Each model runs with its ``experiments/synthetic/<model>.py`` configuration (``:smoke`` with
``--smoke``) on the same Criteo-shaped synthetic data (26 categorical fields with vocabularies
of 10-100, 13 numeric; a group of 8 fields interacting FM-style, as the default
``synthetic_ctr`` data), one epoch at batch 256 (~780 steps, about as many as the
configs' own 3 epochs of 1M rows at batch 4096; at batch 1024 DNN, DCN, AFM and AutoInt
did not beat LR), without checkpoints, and with one short-run recipe for every model:

* tables start from N(0, 0.05^2) and learn at >= 5e-3, with a linear decay of all learning
  rates to 0 (``--init_std``, ``--embedding_lr``, ``--lr_schedule``; the experiment configs of
  FM and DeepFM use these values). From the usual N(0, 1e-4^2) start at 1e-3, one epoch is
  not enough to leave the saddle at zero: FM, NFM and DNN then do not beat LR.
* the three slowest models are shrunk (`SHRINK`, off with ``--no_shrink``): AutoInt+ (MLP
  400-400-400 beside) with 1 attention layer instead of AutoInt with 3, xDeepFM CIN 50-50
  instead of 100-100, FiBiNET MLP 200-200-200 instead of 400-400-400.

Sized so that all 19 models finish in under 30 minutes on 2 CPU cores, even shared with other
jobs. The LAST line of stdout is one JSON object::

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

# Settings of the slowest models on 2 CPU cores, so the whole zoo fits in 30 minutes.
SHRINK: dict[str, dict] = {
  "autoint": {"attention_layers": 1, "hidden": (400, 400, 400)},
  "xdeepfm": {"cin_layers": (50, 50)},
  "fibinet": {"hidden": (200, 200, 200)},
}


def experiment_config(model: str, smoke: bool):
  path = os.path.join(ROOT, "experiments", "synthetic", f"{model}.py")
  spec = importlib.util.spec_from_file_location(f"zoo_{model}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config("smoke" if smoke else None)


def dataset_config(
  rows: int, interaction: str = "field_group", max_vocab: int = 100
) -> builders.CtrConfig:
  # Valid/test at a tenth of train each, as in the built-in configs.
  eval_rows = max(rows // 10, 1000)
  name = f"zoo_bench_{rows}"
  if (interaction, max_vocab) != ("pairs", 2000):  # the earlier default keeps its name
    name += f"_{interaction}_{max_vocab}"
  return builders.CtrConfig(
    name=name,
    sizes=(rows, eval_rows, eval_rows),
    synthetic=synthetic.SyntheticConfig(interaction=interaction, max_vocab=max_vocab),
  )


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--models", default="", help="comma-separated registry names (default: all)")
  p.add_argument("--rows", type=int, default=200_000, help="training rows")
  p.add_argument("--epochs", type=int, default=1)
  p.add_argument("--interaction", default="field_group", help="SyntheticConfig.interaction")
  p.add_argument("--max_vocab", type=int, default=100, help="SyntheticConfig.max_vocab")
  # The configs' batch of 4096 is sized for 3 epochs of 1M rows: on 200k it would leave ~50 steps.
  p.add_argument("--batch_size", type=int, default=256, help="0: each config's own")
  p.add_argument("--init_std", type=float, default=0.05, help="tables' init; 0: configs'")
  p.add_argument(
    "--embedding_lr", type=float, default=5e-3, help="tables' lr at least this; 0: configs'"
  )
  p.add_argument("--dense_lr", type=float, default=0.0, help="dense lr at least this; 0: configs'")
  p.add_argument("--lr_schedule", default="linear", help="empty: the configs' schedule")
  p.add_argument("--no_shrink", action="store_true", help="run the slow models at full size")
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
    "synthetic_ctr",
    data_dir,
    builder_kwargs={"config": dataset_config(rows, args.interaction, args.max_vocab)},
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
    if args.init_std:
      c.embedding.init_std = args.init_std
    c.embedding.learning_rate = max(c.embedding.learning_rate, args.embedding_lr)
    c.optimizer.learning_rate = max(c.optimizer.learning_rate, args.dense_lr)
    if args.lr_schedule:
      c.lr_schedule = args.lr_schedule
    if not (args.no_shrink or args.smoke):
      for k, v in SHRINK.get(name, {}).items():
        c.model_config[k] = v
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
  print(f"total {time.perf_counter() - t0:.0f}s", file=sys.stderr)
  print(json.dumps(results))
  return results


if __name__ == "__main__":
  main()
