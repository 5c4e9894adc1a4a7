r"""din on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_din.py --workdir=/tmp/synthetic_din
python -m jaxctr.main --config=experiments/behaviour/synthetic_din.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("din", "synthetic", arg)
