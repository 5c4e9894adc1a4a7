r"""wide_deep on Frappe (BARS frappe_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/frappe_wide_deep.py:/path/to/frappe \
  --workdir=/tmp/bars_frappe_wide_deep
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("frappe", "wide_deep", arg)
