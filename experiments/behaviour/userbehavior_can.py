r"""can on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_can.py:/data/raw --workdir=/tmp/userbehavior_can
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("can", "userbehavior", arg)
