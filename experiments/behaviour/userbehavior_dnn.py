r"""dnn on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_dnn.py:/data/raw --workdir=/tmp/userbehavior_dnn
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("dnn", "userbehavior", arg)
