r"""ubr4ctr on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_ubr4ctr.py --workdir=/tmp/synthetic_ubr4ctr
python -m jaxctr.main --config=experiments/behaviour/synthetic_ubr4ctr.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("ubr4ctr", "synthetic", arg)
