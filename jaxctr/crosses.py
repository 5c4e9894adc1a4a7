"""Explicit cross-product features (the wide part of Wide & Deep).

For each configured pair of categorical features, the pair of ids is hashed
into one shared bucket space; the buckets are rows of a width-1 sparse table,
so the wide part is a linear model over crosses, trained by the same sparse
optimizers (FTRL-Proximal as in the paper, via `embedding.optimizer`, or any
other) and deduplicated like every table. The crossed ids are computed on the
host in the loader thread and reach the model as
``inputs.sequences["cross_linear"]`` [B, P].

OptInter's memorized pairs (``model_config.memorized_pairs``) are the same hashed crosses
with a full embedding row each (``inputs.sequences["cross_embed"]`` [B, P, D]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxctr.embeddings import hashing
from jaxctr.embeddings.specs import CATEGORICAL, SEQUENCE, FeatureSpec, OptimizerSpec, TableSpec

CROSS_KEY = "cross_linear"
MEMORIZED_KEY = "cross_embed"


class Crosses:
  """Hashed cross-product ids for P feature pairs.

  Args:
    pairs: ``((feature_a, feature_b), ...)`` categorical feature names.
    num_buckets: Rows of the shared cross table.
    features: The dataset's features (column order of ``batch["cat"]``).
    seed: Hash seed (stable across runs and machines).
    key: Feature/table name of the crosses.
    dim: Width of the cross table's rows (1: a weight per cross).
    init_std: Initial row scale (0: the wide part starts as the first-order model).
    what: The config key the pairs came from (for error messages).
  """

  def __init__(
    self,
    pairs: Sequence[Sequence[str]],
    num_buckets: int,
    features: Sequence[FeatureSpec],
    seed=0,
    *,
    key: str = CROSS_KEY,
    dim: int = 1,
    init_std: float = 0.0,
    what: str = "cross_pairs",
  ):
    self.key, self.dim, self.init_std, self.what = key, dim, init_std, what
    cats = [f for f in features if f.kind == CATEGORICAL]
    index = {f.name: i for i, f in enumerate(cats)}
    self.cols = []
    for pair in pairs:
      if len(pair) != 2:
        raise ValueError(f"config.model_config.{what}: {pair!r} is not a pair of feature names")
      for name in pair:
        if name not in index:
          raise ValueError(
            f"config.model_config.{what}: {name!r} is not a categorical feature; "
            f"have {sorted(index)}"
          )
      self.cols.append((index[pair[0]], index[pair[1]], cats[index[pair[1]]].vocab_size))
    if num_buckets < 1:
      raise ValueError(f"config.model_config: {what} need >= 1 hash buckets, got {num_buckets}")
    self.num_buckets = int(num_buckets)
    self.seed = seed

  def feature(self) -> FeatureSpec:
    return FeatureSpec(self.key, SEQUENCE, self.num_buckets, max_len=len(self.cols), pooling="none")

  def table(self, optimizer: OptimizerSpec) -> TableSpec:
    return TableSpec(
      self.key, self.num_buckets, self.dim, init_std=self.init_std, optimizer=optimizer
    )

  def ids(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
    """[B, P] bucket of each example's crossed ids."""
    cat = np.asarray(batch["cat"], np.int64)
    out = np.empty((cat.shape[0], len(self.cols)), np.int64)
    for p, (a, b, vocab_b) in enumerate(self.cols):
      key = cat[:, a] * (vocab_b + 1) + cat[:, b]
      out[:, p] = hashing.hash_buckets(key, self.num_buckets, self.seed, salt=p + 1)
    return out


def from_model_config(model_config, features, like: TableSpec, dim: int, seed=0) -> list[Crosses]:
  """The crosses a model config asks for: Wide & Deep's and OptInter's memorized pairs.

  Args:
    model_config: Reads ``cross_pairs``/``cross_hash_buckets`` (width-1 weights) and
      ``memorized_pairs``/``memorized_hash_buckets`` (rows of width ``dim``).
    features: The dataset's features.
    like: A field table: its optimizer (and, for memorized rows, init scale) is reused.
    dim: Row width of the fields' tables.
    seed: Hash seed.
  """
  out = []
  if model_config.get("cross_pairs"):
    buckets = model_config.get("cross_hash_buckets", 1_000_000)
    out.append(Crosses(model_config.cross_pairs, buckets, features, seed=seed))
  if model_config.get("memorized_pairs"):
    buckets = model_config.get("memorized_hash_buckets", 100_000)
    out.append(
      Crosses(
        model_config.memorized_pairs,
        buckets,
        features,
        seed=seed,
        key=MEMORIZED_KEY,
        dim=dim,
        init_std=like.init_std,
        what="memorized_pairs",
      )
    )
  return out
