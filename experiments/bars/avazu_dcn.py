r"""dcn on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_dcn.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_dcn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "dcn", arg)
