r"""deepfm on the amazon behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/amazon_deepfm.py:/data/raw --workdir=/tmp/amazon_deepfm
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("deepfm", "amazon", arg)
