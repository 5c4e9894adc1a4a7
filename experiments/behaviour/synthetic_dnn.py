r"""dnn on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_dnn.py --workdir=/tmp/synthetic_dnn
python -m jaxctr.main --config=experiments/behaviour/synthetic_dnn.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("dnn", "synthetic", arg)
