r"""afm on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_afm.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_afm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "afm", arg)
