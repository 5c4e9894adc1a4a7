r"""deepfm on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_deepfm.py --workdir=/tmp/synthetic_deepfm
python -m jaxctr.main --config=experiments/behaviour/synthetic_deepfm.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("deepfm", "synthetic", arg)
