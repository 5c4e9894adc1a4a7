r"""Logistic regression on the built-in synthetic CTR dataset (the baseline).

python -m jaxctr.main --config=experiments/synthetic/lr.py --workdir=/tmp/lr
python -m jaxctr.main --config=experiments/synthetic/lr.py:smoke   # seconds
"""

from jaxctr import configs


def get_config(arg=None):
  c = configs.base_config()
  c.model = "lr"
  c.batch_size = 4096
  c.num_epochs = 3
  c.embedding.learning_rate = 1e-2  # one weight per id: a larger step converges in 3 epochs
  c.optimizer.learning_rate = 1e-2
  c.lr_schedule = "linear"  # decays to 0 at the last step: the last epoch fine-tunes
  c.early_stopping.patience = 1
  if arg == "smoke":
    configs.shrink_for_smoke(c)
  return c
