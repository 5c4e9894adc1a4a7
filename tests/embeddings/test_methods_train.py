"""Every embedding method and numeric encoder learns end to end through the trainer.

Runs are few and short (2 cores): one run mixes several methods across
features via ``per_feature``, which also checks that they compose in one model.
"""

import jax
import ml_collections
import numpy as np
import pytest

from jaxctr import train
from tests.conftest import tiny_config


def _config(data_dir, **kw):
  base = {
    "eval_batch_size": 8192,
    "eval_every_steps": 0,
    "total_steps": 60,
    "log_every_steps": 60,
    "checkpoint.enabled": False,
    "embedding.learning_rate": 0.01,
  }
  return tiny_config(data_dir, **{**base, **kw})


@pytest.fixture(scope="module")
def full(data_dir, tmp_path_factory):
  return train.train_and_evaluate(_config(data_dir), str(tmp_path_factory.mktemp("full")))


_MIXED = {
  **{f"C{i}": {"method": "hashing"} for i in range(1, 7)},
  **{f"C{i}": {"method": "double_hashing"} for i in range(7, 13)},
  **{f"C{i}": {"method": "qr"} for i in range(13, 17)},
  "C17": {"method": "qr", "qr_combine": "concat"},
  "C18": {"method": "qr", "qr_combine": "add"},
  **{f"C{i}": {"method": "dhe", "dhe_k": 64, "dhe_hidden": (32,)} for i in range(19, 24)},
  "C24": {"method": "dhe", "dhe_k": 64, "dhe_hidden": (32,), "dhe_dist": "gaussian"},
}


def test_mixed_methods_learn_with_fewer_bytes(data_dir, full, tmp_path):
  c = _config(data_dir)
  c.embedding.per_feature = ml_collections.ConfigDict(_MIXED)
  c.numeric.encoder = "autodis"
  c.numeric.per_feature = ml_collections.ConfigDict({f"I{j}": "tree" for j in range(1, 5)})
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r["table_bytes"] < 0.5 * full["table_bytes"]
  assert full["test_auc"] > 0.62  # the baseline itself learned
  assert r["test_auc"] > 0.6 and r["test_auc"] > full["test_auc"] - 0.06  # 60 steps only
  # The fitted boundaries are part of the saved state, so serving buckets alike.
  rest = r["final_state"]["rest"]
  bounds = [x for p, x in jax.tree_util.tree_leaves_with_path(rest) if "bounds" in str(p)]
  assert len(bounds) == 1 and bounds[0].shape == (4, c.numeric.num_buckets - 1)
  assert np.isfinite(np.asarray(bounds[0])[:, 0]).all()


def test_low_precision_tables_match_fp32(data_dir, full, tmp_path):
  c = _config(data_dir)
  c.embedding.dtype = "float16"
  c.embedding.per_feature = ml_collections.ConfigDict(
    {
      **{f"C{i}": {"dtype": "int16"} for i in range(1, 10)},
      **{f"C{i}": {"dtype": "int8"} for i in range(10, 14)},
      **{f"C{i}": {"dtype": "bfloat16"} for i in range(14, 18)},
    }
  )
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r["test_auc"] == pytest.approx(full["test_auc"], abs=0.003)
  # Adam's two fp32 moments per element stay, so storage falls from 12 to 9-10.5 bytes.
  assert r["table_bytes"] < 0.9 * full["table_bytes"]
