r"""finalmlp on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_finalmlp.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_finalmlp
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "finalmlp", arg)
