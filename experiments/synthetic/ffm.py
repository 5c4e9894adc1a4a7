r"""Field-aware FM on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/ffm.py --workdir=/tmp/ffm
  python -m jaxctr.main --config=experiments/synthetic/ffm.py:smoke   # seconds

F latent vectors of width D per id (tables are D*F+1 wide: FFM.table_dim), so
the embedding dim is kept small (8) as in the paper (k=4..8).
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "ffm"
  c.embed_dim = 8
  c.batch_size = 4096
  c.num_epochs = 2
  c.embedding.learning_rate = 1e-3
  c.optimizer.learning_rate = 1e-3
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
