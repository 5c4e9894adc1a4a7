r"""Factorization Machine on the built-in synthetic CTR dataset.

python -m jaxctr.main --config=experiments/synthetic/fm.py --workdir=/tmp/fm
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "fm"
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 3e-3
  c.optimizer.learning_rate = 3e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
