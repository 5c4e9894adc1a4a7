"""Explicit cross-product features (the wide part of Wide & Deep).

For each configured pair of categorical features, the pair of ids is hashed
into one shared bucket space; the buckets are rows of a width-1 sparse table,
so the wide part is a linear model over crosses, trained by the same sparse
optimizers (FTRL-Proximal as in the paper, via `embedding.optimizer`, or any
other) and deduplicated like every table. The crossed ids are computed on the
host in the loader thread and reach the model as
``inputs.sequences["cross_linear"]`` [B, P].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxctr.embeddings import hashing
from jaxctr.embeddings.specs import CATEGORICAL, SEQUENCE, FeatureSpec, OptimizerSpec, TableSpec

CROSS_KEY = "cross_linear"


class Crosses:
  """Hashed cross-product ids for P feature pairs.

  Args:
    pairs: ``((feature_a, feature_b), ...)`` categorical feature names.
    num_buckets: Rows of the shared cross table.
    features: The dataset's features (column order of ``batch["cat"]``).
    seed: Hash seed (stable across runs and machines).
  """

  def __init__(
    self, pairs: Sequence[Sequence[str]], num_buckets: int, features: Sequence[FeatureSpec], seed=0
  ):
    cats = [f for f in features if f.kind == CATEGORICAL]
    index = {f.name: i for i, f in enumerate(cats)}
    self.cols = []
    for pair in pairs:
      if len(pair) != 2:
        raise ValueError(
          f"config.model_config.cross_pairs: {pair!r} is not a pair of feature names"
        )
      for name in pair:
        if name not in index:
          raise ValueError(
            f"config.model_config.cross_pairs: {name!r} is not a categorical feature; "
            f"have {sorted(index)}"
          )
      self.cols.append((index[pair[0]], index[pair[1]], cats[index[pair[1]]].vocab_size))
    if num_buckets < 1:
      raise ValueError(f"config.model_config.cross_hash_buckets must be >= 1, got {num_buckets}")
    self.num_buckets = int(num_buckets)
    self.seed = seed

  def feature(self) -> FeatureSpec:
    return FeatureSpec(
      CROSS_KEY, SEQUENCE, self.num_buckets, max_len=len(self.cols), pooling="none"
    )

  def table(self, optimizer: OptimizerSpec) -> TableSpec:
    # Zero init: the wide part starts as the plain first-order model.
    return TableSpec(CROSS_KEY, self.num_buckets, 1, init_std=0.0, optimizer=optimizer)

  def ids(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B, P] bucket of each example's crossed ids."""
    cat = np.asarray(batch["cat"], np.int64)
    out = np.empty((cat.shape[0], len(self.cols)), np.int64)
    for p, (a, b, vocab_b) in enumerate(self.cols):
      key = cat[:, a] * (vocab_b + 1) + cat[:, b]
      out[:, p] = hashing.hash_buckets(key, self.num_buckets, self.seed, salt=p + 1)
    return out
