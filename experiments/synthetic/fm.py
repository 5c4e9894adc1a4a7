r"""Factorization Machine on the built-in synthetic CTR dataset.

  python -m jaxctr.main --config=experiments/synthetic/fm.py --workdir=/tmp/fm
  python -m jaxctr.main --config=experiments/synthetic/fm.py:smoke   # seconds

Embedding dim 16, lazy Adam; tables start from N(0, 0.05^2) so the pairwise term
leaves the saddle at 0 quickly (see deepfm.py).
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "fm"
  c.embed_dim = 16
  c.batch_size = 4096
  c.num_epochs = 3
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 5e-3
  c.optimizer.learning_rate = 5e-3
  c.lr_schedule = "linear"  # decays to 0 at the last step: the last epoch fine-tunes
  c.early_stopping.patience = 1
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
