"""Every behaviour experiment config loads, is complete, and builds its model (abstractly)."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import pytest
from flax import nnx

from jaxctr import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATHS = sorted(glob.glob(os.path.join(ROOT, "experiments", "behaviour", "*_*.py")))


def _load(path):
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_behaviour_model_has_configs_on_every_dataset():
  have = {os.path.basename(p)[:-3] for p in PATHS}
  for ds in ("synthetic", "amazon", "userbehavior"):
    for m in [*models.registered("behaviour"), "dnn", "deepfm"]:
      assert f"{ds}_{m}" in have, (ds, m)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: os.path.basename(p)[:-3])
def test_config_builds(path):
  real = not os.path.basename(path).startswith("synthetic")
  c = _load(path).get_config("/data/raw" if real else "smoke")
  if real:
    assert c.dataset.manual_dir == "/data/raw"
  nnx.eval_shape(
    lambda: models.build(c.model, c.model_config, num_fields=3, embed_dim=c.embed_dim, num_dense=0)
  )
