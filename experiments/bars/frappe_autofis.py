r"""autofis on Frappe (BARS frappe_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/frappe_autofis.py:/path/to/frappe \
  --workdir=/tmp/bars_frappe_autofis
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("frappe", "autofis", arg)
