"""config.embedding.exchange through the training script: partials train like rows."""

import numpy as np
import pytest

from jaxctr import train
from tests.test_train import _config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _cfg(data_dir, exchange, **kw):
  base = {
    "total_steps": 12,
    "eval_every_steps": 12,
    "checkpoint.enabled": False,
    "sharding": "row_wise",
    "num_devices": 8,
    "batch_size": 256,
    "embedding.exchange": exchange,
  }
  base.update(kw)
  return _config(data_dir, **base)


def test_partials_run_trains_like_rows(data_dir, tmp_path):
  res = {
    m: train.train_and_evaluate(_cfg(data_dir, m), str(tmp_path / m)) for m in ("rows", "partials")
  }
  assert abs(res["partials"]["test_logloss"] - res["rows"]["test_logloss"]) < 2e-5
  assert abs(res["partials"]["test_auc"] - res["rows"]["test_auc"]) < 2e-5
  t = train.Trainer(_cfg(data_dir, "partials"))
  assert t.exchange.mode == "partials"  # and the same layouts as rows
  got = t.collection.unshard_state(res["partials"]["final_state"]["emb"])
  want = t.collection.unshard_state(res["rows"]["final_state"]["emb"])
  for name in want:
    for k in want[name]:
      np.testing.assert_allclose(got[name][k], want[name][k], rtol=1e-5, atol=1e-6)


def test_auto_picks_by_bytes_and_partials_refuses_clearly(data_dir):
  # FM on 8 devices, F fields of k + 1 values: partials move 8 / F of the rows' bytes.
  t = train.Trainer(_cfg(data_dir, "auto", model="fm"))
  est = t.exchange.bytes_per_step
  assert est["partials"] < est["rows"] and t.exchange.mode == "partials"
  # DNN with a 512-wide first layer: its partials outweigh the rows, auto keeps rows.
  t = train.Trainer(_cfg(data_dir, "auto", model="dnn", **{"model_config.hidden": (512,)}))
  assert t.exchange.mode == "rows"
  with pytest.raises(ValueError, match="exchange='partials': model 'autoint'"):
    train.Trainer(_cfg(data_dir, "partials", model="autoint"))
  with pytest.raises(ValueError, match="exchange='partials' needs sharded tables"):
    train.Trainer(_cfg(data_dir, "partials", sharding="data_parallel"))
