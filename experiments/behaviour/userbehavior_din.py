r"""din on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_din.py:/data/raw --workdir=/tmp/userbehavior_din
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("din", "userbehavior", arg)
