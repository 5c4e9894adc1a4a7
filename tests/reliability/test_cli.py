"""`jaxctr.main` from another working directory, and its default log volume."""

import json
import logging
import os
import subprocess
import sys

import jax
import pytest

from jaxctr import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bars_config_by_absolute_path_from_elsewhere_with_quiet_logs(tmp_path):
  # jaxctr importable (as an installed package is) but the checkout root not on the path,
  # and the working directory elsewhere: the config file is found by its absolute path.
  site = tmp_path / "site"
  site.mkdir()
  os.symlink(os.path.join(REPO, "jaxctr"), site / "jaxctr")
  elsewhere = tmp_path / "cwd"
  elsewhere.mkdir()
  fixture = os.path.join(REPO, "tests", "data", "fixtures", "libfm")
  args = [
    f"--config={REPO}/experiments/bars.py:movielens,fm,{fixture}",
    f"--workdir={tmp_path / 'wd'}",
    f"--config.dataset.data_dir={tmp_path / 'tfds'}",
    "--config.batch_size=8",
    "--config.eval_batch_size=16",
    "--config.num_epochs=1",
    "--config.checkpoint.every_steps=2",
    "--config.progress_bar=False",
  ]
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONPATH=str(site))
  r = subprocess.run(
    [sys.executable, "-m", "jaxctr.main", *args],
    cwd=elsewhere,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["step"] == 5 and 0 <= out["test_auc"] <= 1
  assert "step 5: {" in r.stderr  # the evaluation line is jaxctr's own INFO: kept
  for chatter in ("checkpoint_manager.py", "async_checkpointer.py", "Generating splits"):
    assert chatter not in r.stderr  # orbax/TFDS INFO at the default verbosity: hidden
  assert len(r.stderr.splitlines()) < 40, r.stderr


def test_library_info_only_at_higher_verbosity(monkeypatch):
  f = cli._LibraryInfoFilter()

  def record(path, level=logging.INFO):
    return logging.LogRecord("absl", level, path, 1, "msg", None, None)

  orbax = "/site-packages/orbax/checkpoint/checkpoint_manager.py"
  own = os.path.join(REPO, "jaxctr", "train.py")
  monkeypatch.setattr(cli, "_verbosity", lambda: 0)
  assert f.filter(record(own)) and f.filter(record(orbax, logging.WARNING))
  assert not f.filter(record(orbax))
  monkeypatch.setattr(cli, "_verbosity", lambda: 1)  # --verbosity=1
  assert f.filter(record(orbax))


def test_config_import_paths(tmp_path):
  cfg = tmp_path / "proj" / "experiments" / "bars" / "x.py"
  assert cli.config_path(["prog", f"--config={cfg}:/data"]) == str(cfg)
  assert cli.config_path(["prog", "--config", f"{cfg}:smoke"]) == str(cfg)
  cfg.parent.mkdir(parents=True)
  cfg.write_text("")
  before = list(sys.path)
  try:
    assert cli.add_config_import_paths(["prog", f"--config={cfg}"]) == [str(tmp_path / "proj")]
  finally:
    sys.path[:] = before


def test_peer_failure_is_one_line_and_a_fast_exit(monkeypatch, caplog):
  def fake_exit(code):
    raise SystemExit(code)

  monkeypatch.setattr(os, "_exit", fake_exit)
  err = jax.errors.JaxRuntimeError("UNKNOWN: Gloo AllGather failed: Connection reset by peer")
  with pytest.raises(SystemExit) as e, caplog.at_level("ERROR"):
    with cli.exit_on_peer_failure(True, "/w"):
      raise err
  assert e.value.code == 3
  assert "Connection reset by peer" in caplog.text and "/w/checkpoints" in caplog.text
  with pytest.raises(jax.errors.JaxRuntimeError):  # one process: the error as it is
    with cli.exit_on_peer_failure(False, "/w"):
      raise err
