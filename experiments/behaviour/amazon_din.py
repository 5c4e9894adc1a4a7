r"""din on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_din.py:/data/raw --workdir=/tmp/amazon_din
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("din", "amazon", arg)
