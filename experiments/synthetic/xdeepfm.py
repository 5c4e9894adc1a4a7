r"""xDeepFM on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/xdeepfm.py --workdir=/tmp/xdeepfm
  python -m jaxctr.main --config=experiments/synthetic/xdeepfm.py:smoke   # seconds

CIN 100-100 (split half) + MLP 400-400-400 + linear part. The paper's CIN 200-200-200
costs about 5x more per example, too slow for the CPU benchmark.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "xdeepfm"
  c.model_config.cin_layers = (100, 100)
  c.model_config.split_half = True
  c.model_config.hidden = (400, 400, 400)
  c.model_config.cin_activation = "linear"
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
    c.model_config.cin_layers = (16, 16)
  return c
