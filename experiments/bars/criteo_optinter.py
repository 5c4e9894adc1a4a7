r"""optinter on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_optinter.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_optinter
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "optinter", arg)
