r"""can on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_can.py --workdir=/tmp/synthetic_can
python -m jaxctr.main --config=experiments/behaviour/synthetic_can.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("can", "synthetic", arg)
