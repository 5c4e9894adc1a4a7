r"""opnn on Frappe (BARS frappe_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/frappe_opnn.py:/path/to/frappe \
  --workdir=/tmp/bars_frappe_opnn
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("frappe", "opnn", arg)
