r"""wide_deep on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_wide_deep.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_wide_deep
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "wide_deep", arg)
