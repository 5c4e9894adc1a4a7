r"""dcnv2 on Avazu (train.csv), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/avazu_dcnv2.py:/path/to/avazu \
  --workdir=/tmp/bars_avazu_dcnv2
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("avazu", "dcnv2", arg)
