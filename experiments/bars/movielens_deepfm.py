r"""deepfm on MovieLens (BARS movielenslatest_x1, libFM), BARS protocol (common.py).

python -m jaxctr.main \
  --config=experiments/bars/movielens_deepfm.py:/path/to/movielens \
  --workdir=/tmp/bars_movielens_deepfm
"""

from experiments.bars import common


def get_config(arg=None):
  return common.bars_config("movielens", "deepfm", arg)
