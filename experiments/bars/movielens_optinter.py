r"""optinter on MovieLens (BARS movielenslatest_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/movielens_optinter.py:/path/to/movielens \
  --workdir=/tmp/bars_movielens_optinter
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("movielens", "optinter", arg)
