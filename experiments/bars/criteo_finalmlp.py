r"""finalmlp on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_finalmlp.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_finalmlp
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "finalmlp", arg)
