"""Behaviour models learn what a DNN over the sum-pooled history cannot (through the trainer).

Synthetic behaviour data (`jaxctr.data.behaviour`): the label depends on how many recent
history behaviours share the target's category and on a planted target x history
co-action. A DNN over the sum-pooled history sees only the mixed history vector; DIN's
target attention and SIM's same-category search read the relevant behaviours directly.
"""

from __future__ import annotations

import pytest

from jaxctr import configs, train
from jaxctr.data import behaviour

pytestmark = pytest.mark.slow

MARGIN = 0.03


@pytest.fixture(scope="module")
def dataset():
  cfg = behaviour.BehaviourConfig(num_users=200, num_items=300, num_cates=40, max_len=40)
  return behaviour.in_memory(cfg, sizes=(16_000, 4_000, 4_000))


def run(model, dataset, workdir, **model_config):
  c = configs.base_config()
  c.model = model
  c.model_config.update(dict(hidden=(32, 16), **model_config))
  c.embed_dim = 8
  c.batch_size = 500
  c.eval_batch_size = 4000
  c.num_epochs = 3
  c.eval_every_steps = 10**9
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 3e-3
  c.optimizer.learning_rate = 2e-3
  c.checkpoint.enabled = False
  c.num_devices = 1
  c.progress_bar = False
  c.log_every_steps = 1000
  return train.train_and_evaluate(c, str(workdir), dataset=dataset)


@pytest.fixture(scope="module")
def dnn_auc(dataset, tmp_path_factory):
  return run("dnn", dataset, tmp_path_factory.mktemp("dnn"))["test_auc"]


@pytest.mark.parametrize(
  "model,model_config",
  [("din", {"attention_hidden": (16,)}), ("sim", {"search": "hard", "top_k": 8, "short_len": 4})],
)
def test_beats_sum_pool_dnn(model, model_config, dataset, dnn_auc, tmp_path):
  result = run(model, dataset, tmp_path, **model_config)
  assert result["test_auc"] >= dnn_auc + MARGIN, (model, result["test_auc"], dnn_auc)
  assert result["test_auc"] <= result["oracle_auc"] + 0.01
