r"""Field-weighted FM on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/fwfm.py --workdir=/tmp/fwfm
  python -m jaxctr.main --config=experiments/synthetic/fwfm.py:smoke   # seconds

FM with one learned weight per field pair; embedding dim 16.
"""

from jaxctr import configs


def get_config(arg=None):
  # Every model_config key is set, so any can be overridden on the command line (configs are
  # locked after get_config).
  c = configs.base_config()
  c.model = "fwfm"
  c.model_config.pair_weight_init = 1.0
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
