"""Declared configs: misspelt keys fail, in an experiment file and on the command line."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from jaxctr import configs, models


def _parse(tmp_path, body):
  exp = tmp_path / "exp.py"
  exp.write_text(
    "from jaxctr import configs\n\ndef get_config(arg=None):\n"
    "  c = configs.base_config()\n" + "".join(f"  {line}\n" for line in body) + "  return c\n"
  )
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True)
  fv(["prog", f"--config={exp}"])
  return fv.config


def test_typo_in_experiment_file_names_key_and_closest(tmp_path):
  with pytest.raises(flags.IllegalFlagValueError) as e:
    _parse(tmp_path, ["c.embedding.learning_rat = 0.1"])
  assert "unknown key 'learning_rat'; did you mean 'learning_rate'?" in str(e.value)
  assert _parse(tmp_path, ["c.embedding.learning_rate = 0.1"]).embedding.learning_rate == 0.1


def test_typo_on_command_line_names_key_and_closest(tmp_path):
  cmd = [sys.executable, "-m", "jaxctr.main", "--config=experiments/synthetic/fm.py:smoke"]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root)
  out = subprocess.run(
    cmd + ["--config.embedding.learning_rat=3"], capture_output=True, text=True, env=env, cwd=root
  )
  assert out.returncode != 0
  assert "unknown key 'learning_rat'; did you mean 'learning_rate'?" in out.stderr


def test_model_hyperparameters_are_declared_by_the_model():
  hp = models.hyperparameters("deepfm", {"hidden": (8,)})
  assert hp.hidden == (8,) and hp.dropout == 0.0  # declared default filled in
  with pytest.raises(configs.ConfigKeyError, match="'hiden'; did you mean 'hidden'"):
    models.hyperparameters("deepfm", {"hiden": (8,)})
  with pytest.raises(configs.ConfigKeyError, match="'cross_layer'; did you mean 'cross_layers'"):
    models.hyperparameters("dcnv2", {"cross_layer": 2})
