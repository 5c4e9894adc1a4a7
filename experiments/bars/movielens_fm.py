r"""fm on MovieLens (BARS movielenslatest_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/movielens_fm.py:/path/to/movielens \
  --workdir=/tmp/bars_movielens_fm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("movielens", "fm", arg)
