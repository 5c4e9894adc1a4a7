r"""ubr4ctr on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_ubr4ctr.py:/data/raw --workdir=/tmp/amazon_ubr4ctr
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("ubr4ctr", "amazon", arg)
