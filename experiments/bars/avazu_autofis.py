r"""autofis on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_autofis.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_autofis
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "autofis", arg)
