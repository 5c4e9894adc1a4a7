r"""sim on the synthetic behaviour data (see experiments/behaviour/common.py).

python -m jaxctr.main --config=experiments/behaviour/synthetic_sim.py --workdir=/tmp/synthetic_sim
python -m jaxctr.main --config=experiments/behaviour/synthetic_sim.py:smoke   # seconds
"""

from experiments.behaviour import common


def get_config(arg=None):
  return common.behaviour_config("sim", "synthetic", arg)
