r"""deepfm on the userbehavior behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/userbehavior_deepfm.py:/data/raw --workdir=/tmp/userbehavior_deepfm
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("deepfm", "userbehavior", arg)
