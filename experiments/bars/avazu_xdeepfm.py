r"""xdeepfm on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_xdeepfm.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_xdeepfm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "xdeepfm", arg)
