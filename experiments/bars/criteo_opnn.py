r"""opnn on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_opnn.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_opnn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "opnn", arg)
