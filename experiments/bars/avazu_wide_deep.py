r"""wide_deep on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_wide_deep.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_wide_deep
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "wide_deep", arg)
