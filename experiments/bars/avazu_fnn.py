r"""fnn on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_fnn.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_fnn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "fnn", arg)
