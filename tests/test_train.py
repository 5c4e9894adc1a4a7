"""End-to-end training: resume equivalence, data parallelism, early stopping, outputs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxctr import train
from tests.conftest import tiny_config


def _config(data_dir, model="deepfm", **kw):
  return tiny_config(data_dir, model, **kw)


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_interrupted_and_resumed_run_matches_uninterrupted(data_dir, tmp_path):
  full = train.train_and_evaluate(_config(data_dir), str(tmp_path / "full"))
  wd = str(tmp_path / "resumed")
  part = train.train_and_evaluate(_config(data_dir), wd, stop_at_step=13)
  assert part["preempted"] and part["step"] == 13
  resumed = train.train_and_evaluate(_config(data_dir), wd)
  assert resumed["step"] == full["step"] == 24
  for a, b in zip(_leaves(full["final_state"]), _leaves(resumed["final_state"]), strict=True):
    np.testing.assert_array_equal(a, b)
  assert resumed["test_auc"] == full["test_auc"]


def test_eight_devices_match_one(data_dir, tmp_path):
  assert jax.device_count() == 8
  one = train.train_and_evaluate(_config(data_dir, num_devices=1), str(tmp_path / "one"))
  eight = train.train_and_evaluate(_config(data_dir, num_devices=8), str(tmp_path / "eight"))
  for k in ("valid_auc", "valid_logloss", "test_auc", "test_logloss"):
    assert eight[k] == pytest.approx(one[k], abs=2e-5), k
  for a, b in zip(_leaves(one["final_state"]), _leaves(eight["final_state"]), strict=True):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_early_stopping_keeps_and_uses_best(data_dir, tmp_path):
  # A huge learning rate makes validation worse after the first evaluation.
  c = _config(
    data_dir, **{"embedding.learning_rate": 1.0, "optimizer.learning_rate": 1.0, "total_steps": 80}
  )
  c.early_stopping.patience = 2
  c.early_stopping.monitor = "valid_logloss"
  c.early_stopping.mode = "min"
  r = train.train_and_evaluate(c, str(tmp_path))
  lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
  evals = [x for x in lines if "valid_logloss" in x and "test_auc" not in x]
  best = min(x["valid_logloss"] for x in evals)
  assert r["stopped_early"] and r["step"] < 80
  assert r["valid_logloss"] == pytest.approx(best, rel=1e-6)  # final metrics are the best model's
  assert os.listdir(tmp_path / "best")


def test_outputs_written(data_dir, tmp_path):
  c = _config(
    data_dir, model="lr", **{"embedding.learning_rate": 0.05, "optimizer.learning_rate": 0.05}
  )
  r = train.train_and_evaluate(c, str(tmp_path))
  lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
  assert any("train_loss" in x for x in lines)
  assert sum("valid_auc" in x for x in lines) >= 3
  assert os.listdir(tmp_path / "tensorboard")
  plan = json.loads((tmp_path / "plan.json").read_text())  # where every table lives
  assert set(plan["placements"].values()) == {"data_parallel"}
  assert "strategy" in (tmp_path / "plan.txt").read_text()
  assert 0.5 < r["test_auc"] <= 1.0 and r["oracle_auc"] > r["test_auc"]
  assert r["examples_per_s"] > 0 and r["dense_params"] > 0


def test_bad_config_keys_fail_clearly(data_dir, tmp_path):
  with pytest.raises(ValueError, match="config.model: unknown model 'deepfmm'"):
    train.train_and_evaluate(_config(data_dir, model="deepfmm"), str(tmp_path))
  with pytest.raises(ValueError, match="sparse optimizer 'adamm'"):
    train.train_and_evaluate(_config(data_dir, **{"embedding.optimizer": "adamm"}), str(tmp_path))
  with pytest.raises(ValueError, match="group_feature: 'C99'"):
    train.train_and_evaluate(_config(data_dir, **{"dataset.group_feature": "C99"}), str(tmp_path))
  with pytest.raises(ValueError, match="config.batch_size=100000 exceeds"):
    train.train_and_evaluate(_config(data_dir, batch_size=100000), str(tmp_path))


def test_fnn_starts_from_fm_tables(data_dir, tmp_path):
  fm = train.train_and_evaluate(_config(data_dir, model="fm"), str(tmp_path / "fm"))
  c = _config(data_dir, model="fnn", total_steps=1)
  c.model_config.init_from_fm = str(tmp_path / "fm")
  c.embedding.learning_rate = 0.0  # tables stay exactly as restored
  fnn = train.train_and_evaluate(c, str(tmp_path / "fnn"))
  for name, entry in fm["final_state"]["emb"].items():
    np.testing.assert_array_equal(
      np.asarray(entry["table"]), np.asarray(fnn["final_state"]["emb"][name]["table"])
    )
  c.embed_dim = 4
  with pytest.raises(ValueError, match="init_from_fm: .*(no table|same features)"):
    train.train_and_evaluate(c, str(tmp_path / "fnn4"))


def test_lr_schedule_scales_dense_and_sparse_updates(data_dir, tmp_path):
  c = _config(data_dir, model="fm", total_steps=4, lr_schedule="linear")
  t = train.Trainer(c)
  scales = [float(t.lr_scale(jnp.int32(s))) for s in (0, 1, 2, 4)]
  assert scales == pytest.approx([1.0, 0.75, 0.5, 0.0])
  # A last step with factor 0 changes nothing: training 4 steps equals 3 steps + a frozen one.
  r4 = train.train_and_evaluate(c, str(tmp_path / "four"))
  r3 = train.train_and_evaluate(c, str(tmp_path / "three"), stop_at_step=3)
  del r3
  resumed_state = train.Trainer(c)
  ck = train.ckpt_lib.Checkpointer(str(tmp_path / "three" / "checkpoints"), async_save=False)
  state3, _ = ck.restore(resumed_state.init_state())
  for name, entry in state3["emb"].items():  # tables only: slots still update with factor 0
    np.testing.assert_array_equal(entry["table"], r4["final_state"]["emb"][name]["table"])
  with pytest.raises(ValueError, match="config.lr_schedule: unknown 'cosin'"):
    train.train_and_evaluate(_config(data_dir, lr_schedule="cosin"), str(tmp_path / "bad"))
