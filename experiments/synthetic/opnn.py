r"""OPNN on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/opnn.py --workdir=/tmp/opnn
  python -m jaxctr.main --config=experiments/synthetic/opnn.py:smoke   # seconds

Outer products (the paper's sum-pooled f_S f_S^T) into MLP 400-400-400.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "opnn"
  c.model_config.hidden = (400, 400, 400)
  c.model_config.product_type = "sum"  # sum|mat|vec|num
  c.model_config.activation = "relu"
  c.model_config.dropout = 0.0
  c.model_config.batch_norm = False
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
