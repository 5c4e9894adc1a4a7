"""In-memory datasets: numpy arrays with the same interface as a prepared dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxctr.data import builders, preprocess, storage
from jaxctr.embeddings.specs import FeatureSpec


def from_arrays(
  name: str,
  splits: Mapping[str, Mapping[str, np.ndarray]],
  features: Sequence[FeatureSpec],
  *,
  oracle_auc: Mapping[str, float] | None = None,
  group_feature: str | None = None,
) -> builders.PreparedDataset:
  """Wraps already-encoded arrays as a `PreparedDataset` (no files written).

  Args:
    name: Dataset name (for logs).
    splits: ``{"train": {"label": [n], "cat": [n, F], "num": [n, N]}, "valid": ..., "test": ...}``.
    features: Categorical features (columns of ``cat``), then numeric ones.
    oracle_auc: Best achievable AUC per split, if known.
    group_feature: Categorical feature to report group AUC over.
  """
  for split, arrays in splits.items():
    n = len(arrays["label"])
    for k, v in arrays.items():
      if len(v) != n:
        raise ValueError(f"split {split!r}: column {k!r} has {len(v)} rows, label has {n}")
  info = preprocess.DatasetInfo(
    name=name,
    features=tuple(features),
    num_examples={s: len(a["label"]) for s, a in splits.items()},
    oracle_auc=dict(oracle_auc) if oracle_auc else None,
    group_feature=group_feature,
  )
  sources = {s: storage.ArraySplit(dict(a)) for s, a in splits.items()}
  return builders.PreparedDataset(info, sources, data_dir="")
