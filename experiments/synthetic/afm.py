r"""Attentional FM on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/afm.py --workdir=/tmp/afm
  python -m jaxctr.main --config=experiments/synthetic/afm.py:smoke   # seconds

Attention network of 16 units over the pair products.
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "afm"
  c.model_config.attention_dim = 16
  c.model_config.dropout = 0.0
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
    c.model_config.attention_dim = 4
  return c
