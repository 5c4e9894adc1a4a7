r"""ubr4ctr on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_ubr4ctr.py:/data/raw --workdir=/tmp/userbehavior_ubr4ctr
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("ubr4ctr", "userbehavior", arg)
