r"""AutoInt on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/autoint.py --workdir=/tmp/autoint
  python -m jaxctr.main --config=experiments/synthetic/autoint.py:smoke   # seconds

3 interacting layers, 2 heads of 32, residual (the paper); set `hidden` for
AutoInt+.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "autoint"
  c.model_config.attention_layers = 3
  c.model_config.num_heads = 2
  c.model_config.attention_dim = 32
  c.model_config.use_residual = True
  c.model_config.hidden = ()
  c.model_config.scale = True
  c.model_config.layer_norm = False
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
    c.model_config.attention_layers = 1
    c.model_config.attention_dim = 8
  return c
