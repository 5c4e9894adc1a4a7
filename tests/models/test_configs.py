"""Every model has experiment configs that load and build (no training: cheap)."""

from __future__ import annotations

import importlib.util
import os

import pytest
from flax import nnx

from jaxctr import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build_abstract(c):
  """Builds the model with abstract (shape-only) parameters: checks the config, costs no FLOPs."""
  nnx.eval_shape(
    lambda: models.build(c.model, c.model_config, num_fields=4, embed_dim=c.embed_dim, num_dense=2)
  )


def _load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("model", models.registered())
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_synthetic_config_builds(model, arg):
  c = _load(os.path.join(ROOT, "experiments", "synthetic", f"{model}.py")).get_config(arg)
  assert c.model == model
  _build_abstract(c)


@pytest.mark.parametrize("dataset", ["frappe", "movielens", "criteo", "avazu"])
def test_bars_configs(dataset):
  bars = _load(os.path.join(ROOT, "experiments", "bars.py"))
  assert set(bars.MODELS) == set(models.registered())
  deep_l2 = {"frappe": 0.05, "movielens": 0.01, "criteo": 1e-5, "avazu": 0.0}
  for model in bars.MODELS:
    c = bars.get_config(f"{dataset},{model},/data/raw")
    assert c.dataset.manual_dir == "/data/raw" and c.model == model
    assert (c.embed_dim, c.batch_size, c.early_stopping.patience) == (10, 4096, 2)
    assert (c.lr_plateau.factor, c.lr_plateau.patience, c.embedding.l2_mode) == (0.1, 1, "sparse")
    if model in bars.SHALLOW:  # BARS tunes shallow models' regulariser 1e-8..1e-4
      assert c.embedding.l2 <= 1e-5
    else:
      assert c.embedding.l2 == deep_l2[dataset]
    _build_abstract(c)
  assert bars.get_config("frappe,fm").embedding.l2 == 5e-6  # FM_frappe_x1 in BARS
  with pytest.raises(ValueError, match="dataset,model"):
    bars.get_config("frappe")
