r"""dnn on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_dnn.py:/data/raw --workdir=/tmp/amazon_dnn
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("dnn", "amazon", arg)
