"""The command-line entry point, as a user runs it."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path):
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", "jaxctr.main", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_main_smoke_prints_final_json_and_resumes(tmp_path):
  args = [
    "--config=experiments/synthetic/deepfm.py:smoke",
    f"--workdir={tmp_path / 'wd'}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.progress_bar=False",
  ]
  r = _run(args, tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  for key in ("test_auc", "test_logloss", "oracle_auc"):
    assert isinstance(out[key], float), key
  assert 0.5 < out["test_auc"] < out["oracle_auc"]
  # Same workdir again: resumes at the final step and trains nothing more.
  r2 = _run(args, tmp_path)
  assert r2.returncode == 0, r2.stderr[-3000:]
  out2 = json.loads(r2.stdout.strip().splitlines()[-1])
  assert out2["step"] == out["step"] and out2["test_auc"] == out["test_auc"]


def test_main_rejects_unknown_config_key(tmp_path):
  r = _run(["--config=experiments/synthetic/deepfm.py:smoke", "--config.batch_sizee=3"], tmp_path)
  assert r.returncode != 0
  assert "batch_sizee" in r.stderr


def test_input_error_is_one_line_not_a_traceback(tmp_path):
  # Raw 64-bit hashed ids under a one-row-per-id table: refused before anything is built.
  args = [
    "--config=experiments/synthetic/deepfm.py:smoke",
    f"--workdir={tmp_path / 'wd'}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.dataset.hash_features=C1",
    "--config.progress_bar=False",
  ]
  r = _run(args, tmp_path)
  assert r.returncode == 2, r.stderr[-3000:]
  assert "Traceback" not in r.stderr
  assert "jaxctr: SpecError: features ['C1'] hold raw 64-bit hashed ids" in r.stderr
  assert "config.embedding.method" in r.stderr
  assert not os.path.exists(tmp_path / "wd" / "checkpoints")
