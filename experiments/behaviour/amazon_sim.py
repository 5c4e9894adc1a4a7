r"""sim on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_sim.py:/data/raw --workdir=/tmp/amazon_sim
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("sim", "amazon", arg)
