r"""dcnv2 on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_dcnv2.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_dcnv2
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "dcnv2", arg)
