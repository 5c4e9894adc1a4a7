r"""FinalMLP on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/finalmlp.py --workdir=/tmp/finalmlp
  python -m jaxctr.main --config=experiments/synthetic/finalmlp.py:smoke   # seconds

Streams 400-400-400 and 800, feature gates of 800 units (learned context),
bilinear fusion with 1 head.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "finalmlp"
  c.model_config.mlp1_hidden = (400, 400, 400)
  c.model_config.mlp2_hidden = (800,)
  c.model_config.fs_hidden = (800,)
  c.model_config.fs1_context = ()
  c.model_config.fs2_context = ()
  c.model_config.num_heads = 1
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
    c.model_config.mlp1_hidden = (32, 32)
    c.model_config.mlp2_hidden = (32,)
    c.model_config.fs_hidden = (16,)
  return c
