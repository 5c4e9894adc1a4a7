"""Learning tests: every model trains through `jaxctr.train` and beats logistic regression.

Two tiny synthetic datasets (8 fields, vocabularies <= 40, 40k training rows):

* ``standard``: first-order, numeric and pairwise signal; every model must beat LR.
* ``pairwise``: labels depend only on planted field-pair interactions, so LR stays near
  AUC 0.5 and every model with an explicit interaction component must clear it by a margin.

The models use their `experiments/synthetic/<model>.py` smoke configs with a larger step size,
so each run takes seconds. LR baselines are trained once per module.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections
import pytest

from jaxctr import models, train
from jaxctr.data import builders, synthetic

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = os.path.join(ROOT, "experiments", "synthetic")

# Models with an explicit feature-interaction component (must learn the pairwise-only data).
INTERACTION_MODELS = (
  "fm",
  "fwfm",
  "ffm",
  "deepfm",
  "nfm",
  "afm",
  "ipnn",
  "opnn",
  "dcn",
  "dcnv2",
  "xdeepfm",
  "autoint",
  "fibinet",
  "dlrm",
)
PAIRWISE_MARGIN = 0.05


def _synthetic(pairwise_only: bool) -> builders.CtrConfig:
  scfg = synthetic.SyntheticConfig(
    num_numeric=4,
    num_categorical=8,
    min_vocab=10,
    max_vocab=40,
    num_pairs=6,
    s_pair=1.5,
    pairwise_only=pairwise_only,
  )
  name = "zoo_test_pairwise" if pairwise_only else "zoo_test_standard"
  return builders.CtrConfig(
    name=name, sizes=(40_000, 8_000, 8_000), chunk_rows=4096, synthetic=scfg
  )


def load_experiment(model: str, arg: str | None = "smoke") -> ml_collections.ConfigDict:
  """`get_config(arg)` of experiments/synthetic/<model>.py."""
  path = os.path.join(EXPERIMENTS, f"{model}.py")
  spec = importlib.util.spec_from_file_location(f"experiments_synthetic_{model}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def run(model: str, dataset, workdir) -> dict:
  c = load_experiment(model)
  c.embed_dim = 8
  c.batch_size = 1024
  c.eval_batch_size = 8192
  c.num_epochs = 5
  c.eval_every_steps = 10**9  # evaluate once, at the end: evaluations cost as much as training here
  # Larger steps than the paper settings: a few hundred steps must suffice here.
  c.embedding.learning_rate = 3e-2
  c.optimizer.learning_rate = 3e-3
  c.checkpoint.enabled = False
  c.num_devices = 1  # 8 fake devices on 2 cores only add collective overhead here
  c.progress_bar = False
  c.log_every_steps = 1000
  return train.train_and_evaluate(c, str(workdir), dataset=dataset)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  return {
    kind: builders.load_dataset(
      "synthetic_ctr", data_dir, builder_kwargs={"config": _synthetic(kind == "pairwise")}
    )
    for kind in ("standard", "pairwise")
  }


@pytest.fixture(scope="module")
def lr_auc(datasets, tmp_path_factory):
  return {
    kind: run("lr", ds, tmp_path_factory.mktemp(f"lr_{kind}"))["test_auc"]
    for kind, ds in datasets.items()
  }


def test_lr_is_near_chance_on_pairwise_only(lr_auc):
  assert lr_auc["pairwise"] < 0.56, lr_auc


@pytest.mark.parametrize("model", [m for m in models.registered() if m != "lr"])
def test_beats_lr(model, datasets, lr_auc, tmp_path):
  result = run(model, datasets["standard"], tmp_path)
  assert result["test_auc"] > lr_auc["standard"], (model, result["test_auc"], lr_auc)
  assert result["test_auc"] <= result["oracle_auc"] + 0.01


@pytest.mark.parametrize("model", INTERACTION_MODELS)
def test_learns_pairwise_interactions(model, datasets, lr_auc, tmp_path):
  result = run(model, datasets["pairwise"], tmp_path)
  margin = result["test_auc"] - lr_auc["pairwise"]
  assert margin >= PAIRWISE_MARGIN, (model, result["test_auc"], lr_auc["pairwise"])
