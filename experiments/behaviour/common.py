"""Shared settings of the behaviour-model experiments (DIN, SIM, UBR4CTR, CAN, baselines).

Datasets (all with user_id, item_id, cate_id and item/cate histories sharing their tables):

* ``synthetic``: ``synthetic_behaviour`` (planted category/recency and co-action signal,
  known oracle AUC; ``:smoke`` uses its ``tiny`` config);
* ``amazon``: BARS ``AmazonElectronics_x1`` CSVs from the manual directory given as the
  config argument (``bars_behaviour/amazon_electronics``; TaobaoAd_x1 is
  ``--config.dataset.name=bars_behaviour/taobao_ad``);
* ``userbehavior``: the Taobao ``UserBehavior.csv`` log from the manual directory.
"""

from __future__ import annotations

from jaxctr import configs

MODEL_CONFIGS = {
  # Baselines read the sum-pooled history (the dataset's declared pooling).
  "dnn": {"hidden": (200, 80), "activation": "relu"},
  "deepfm": {"hidden": (200, 80), "activation": "relu"},
  "din": {"hidden": (200, 80), "attention_hidden": (80, 40), "attention_activation": "dice"},
  "sim": {"hidden": (200, 80), "search": "soft", "top_k": 20, "short_len": 10},
  "ubr4ctr": {"hidden": (200, 80), "top_k": 20},
  "can": {"hidden": (200, 80), "feed_dim": 4, "micro_hidden": (4, 4), "orders": 2},
}

DATASETS = {
  "synthetic": "synthetic_behaviour",
  "amazon": "bars_behaviour/amazon_electronics",
  "userbehavior": "user_behavior",
}


def behaviour_config(model: str, dataset: str, arg=None):
  """The config of ``model`` on ``dataset``; ``arg``: a manual dir (real data) or ``smoke``."""
  c = configs.base_config()
  c.model = model
  c.model_config.update(MODEL_CONFIGS[model])
  c.dataset.name = DATASETS[dataset]
  c.embed_dim = 16
  c.batch_size = 1024
  c.eval_batch_size = 8192
  c.num_epochs = 3
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 3e-3
  c.optimizer.learning_rate = 1e-3
  c.early_stopping.patience = 1
  if dataset != "synthetic":
    c.dataset.manual_dir = arg if arg not in (None, "smoke") else ""
    c.dataset.group_feature = "user_id"  # gAUC over users, as BARS reports
    c.num_epochs = 5
  if arg == "smoke":  # synthetic only: a real dataset needs its manual directory
    c.dataset.builder_kwargs.config = "tiny"
    c.batch_size = 256
    c.eval_batch_size = 1024
    c.num_epochs = 1
    c.log_every_steps = 10
    c.model_config.hidden = (32, 16)
  return c
