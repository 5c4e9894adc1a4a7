r"""dnn on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_dnn.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_dnn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "dnn", arg)
