r"""nfm on Criteo (Kaggle train.txt), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/criteo_nfm.py:/path/to/criteo \
  --workdir=/tmp/bars_criteo_nfm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("criteo", "nfm", arg)
