r"""nfm on Frappe (BARS frappe_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/frappe_nfm.py:/path/to/frappe \
  --workdir=/tmp/bars_frappe_nfm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("frappe", "nfm", arg)
