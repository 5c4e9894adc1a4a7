r"""can on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_can.py:/data/raw --workdir=/tmp/amazon_can
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("can", "amazon", arg)
