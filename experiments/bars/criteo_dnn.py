r"""dnn on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_dnn.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_dnn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "dnn", arg)
