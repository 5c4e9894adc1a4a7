r"""sim on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_sim.py:/data/raw --workdir=/tmp/userbehavior_sim
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("sim", "userbehavior", arg)
