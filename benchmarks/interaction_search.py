r"""Interaction search on planted interactions: does the search find them, does it pay?

  python benchmarks/interaction_search.py [--data_dir=...] [--workdir=...] [--only=autofis]

Data: the `synthetic_ctr/planted` dataset (10 fields; 3 low-rank pairs among the larger
vocabularies, 3 full-rank cross-product pairs among the smaller ones, 39 null pairs; the
truth is in the dataset info). Every run uses the experiment configs
`experiments/synthetic/{autofis,optinter}.py` and their one-command pipeline
(`jaxctr.search.run`: search stage, then retrain stage).

* AutoFIS: precision and recall of the kept pairs (gate != 0) against the 6 planted pairs;
  test AUC of the retrained AutoDeepFM and of its base model (the same DeepFM keeping every
  pair, same schedule).
* OptInter: the 3 x 3 confusion of the chosen kind per pair (rows: planted naive/null,
  memorized/cross-product, factorized/low-rank; columns: chosen kind), its diagonal
  fraction, and test AUCs of the retrained model, of DeepFM and of Wide & Deep crossing all
  45 pairs (same embedding size, MLP and schedule).

The search hyperparameters (gRDA's c; OptInter's naive head start) come from a small grid
chosen by the retrained model's validation AUC; test metrics are only reported.
The last stdout line is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from jaxctr import config_files, search, train  # noqa: E402
from jaxctr.data import builders  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("data_dir", "~/.cache/jaxctr/tfds", "TFDS data directory.")
flags.DEFINE_string("workdir", "", "Run folders (default: a new temporary directory).")
flags.DEFINE_string("only", "", "autofis|optinter: run one half.")
flags.DEFINE_string("dataset_config", "planted", "synthetic_ctr builder config.")
FLAGS = flags.FLAGS

GRDA_C = (0.1, 0.2)  # AutoFIS sparsity strengths tried
NAIVE_INIT = (0.3, 0.6)  # OptInter head starts of the naive kind tried


def _config(name: str, **overrides) -> ml_collections.ConfigDict:
  """``experiments/synthetic/<name>.py`` (declared keys only) on this run's data."""
  return config_files.load(
    os.path.join(ROOT, "experiments", "synthetic", f"{name}.py"),
    {
      "dataset.builder_kwargs": {"config": FLAGS.dataset_config},
      "dataset.data_dir": FLAGS.data_dir,
      "progress_bar": False,
      **overrides,
    },
  )


def _best(runs):
  """The run with the best validation AUC (the only thing the choice may look at)."""
  return max(runs, key=lambda r: r["valid_auc"])


def _pipeline(config, workdir, dataset):
  result = search.run(config, workdir, dataset=dataset)
  with open(os.path.join(workdir, "selection.json")) as fh:
    result["sel"] = json.load(fh)
  return result


def autofis(dataset, workdir) -> dict:
  truth = {tuple(p) for k in ("lowrank", "cross") for p in dataset.info.extra["planted"][k]}
  runs = []
  for c in GRDA_C:
    cfg = _config("autofis", **{"optimizer.grda_c": c})
    r = _pipeline(cfg, os.path.join(workdir, f"autofis_c{c}"), dataset)
    kept = {tuple(p) for p in r["sel"]["cross_pairs"]}
    hit = len(kept & truth)
    r.update(
      grda_c=c,
      precision=hit / max(len(kept), 1),
      recall=hit / len(truth),
      kept=sorted(kept),
    )
    logging.info("autofis c=%g: %s", c, {k: r[k] for k in ("valid_auc", "precision", "recall")})
    runs.append(r)
  best = _best(runs)
  base_cfg = _config("autofis")
  base_cfg.search.method = ""  # the base model: every pair, no gates
  base = train.train_and_evaluate(base_cfg, os.path.join(workdir, "autofis_base"), dataset=dataset)
  return {
    "precision": best["precision"],
    "recall": best["recall"],
    "test_auc": best["test_auc"],
    "base_auc": base["test_auc"],
    "valid_auc": best["valid_auc"],
    "base_valid_auc": base["valid_auc"],
    "grda_c": best["grda_c"],
    "num_kept": len(best["kept"]),
    "grid": [{k: r[k] for k in ("grda_c", "valid_auc", "precision", "recall")} for r in runs],
  }


def optinter(dataset, workdir) -> dict:
  planted = dataset.info.extra["planted"]
  kind = {tuple(p): 1 for p in planted["cross"]}
  kind.update({tuple(p): 2 for p in planted["lowrank"]})
  runs = []
  for b in NAIVE_INIT:
    cfg = _config("optinter", **{"model_config.naive_init": b})
    r = _pipeline(cfg, os.path.join(workdir, f"optinter_b{b}"), dataset)
    conf = np.zeros((3, 3), int)
    for row, choice in zip(r["sel"]["pairs"], r["sel"]["choices"], strict=True):
      conf[kind.get(tuple(row["pair"]), 0), choice] += 1
    r.update(naive_init=b, confusion=conf.tolist(), diagonal=float(np.trace(conf) / conf.sum()))
    logging.info("optinter naive_init=%g: valid %.4f confusion %s", b, r["valid_auc"], conf)
    runs.append(r)
  best = _best(runs)
  # Baselines with the OptInter config's embedding size, MLP and schedule.
  common = {
    k: v
    for k, v in _config("optinter").items()
    if k
    in (
      "embed_dim",
      "batch_size",
      "num_epochs",
      "lr_schedule",
      "embedding",
      "optimizer",
      "early_stopping",
    )
  }
  out = {}
  for name, model, mc in (
    ("deepfm_auc", "deepfm", {}),
    ("wide_deep_auc", "wide_deep", {"cross_pairs": (), "cross_hash_buckets": 200_000}),
  ):
    cfg = _config(model)
    for k, v in common.items():
      cfg[k] = v
    cfg.optimizer.arch_learning_rate = 0.0
    cfg.model_config.hidden = tuple(_config("optinter").model_config.hidden)
    for k, v in mc.items():
      cfg.model_config[k] = v
    if model == "wide_deep":  # every pair crossed
      names = search.field_names(dataset, 0)
      cfg.model_config.cross_pairs = tuple(search.pair_names(names))
    r = train.train_and_evaluate(cfg, os.path.join(workdir, model), dataset=dataset)
    out[name] = r["test_auc"]
    out[name.replace("_auc", "_valid_auc")] = r["valid_auc"]
  return {
    "confusion": best["confusion"],
    "diagonal_fraction": best["diagonal"],
    "test_auc": best["test_auc"],
    "deepfm_auc": out["deepfm_auc"],
    "wide_deep_auc": out["wide_deep_auc"],
    "valid_auc": best["valid_auc"],
    "naive_init": best["naive_init"],
    "baseline_valid_auc": {k: v for k, v in out.items() if "valid" in k},
    "grid": [{k: r[k] for k in ("naive_init", "valid_auc", "diagonal")} for r in runs],
  }


def main(argv):
  del argv
  workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="interaction_search_")
  dataset = builders.load_dataset(
    "synthetic_ctr",
    os.path.expanduser(FLAGS.data_dir),
    builder_kwargs={"config": FLAGS.dataset_config},
  )
  result = {"oracle_auc": dataset.info.oracle_auc["test"], "workdir": workdir}
  for name, fn in (("autofis", autofis), ("optinter", optinter)):
    if FLAGS.only in ("", name):
      result[name] = fn(dataset, workdir)
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  app.run(main)
