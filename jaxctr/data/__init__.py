"""Data pipeline: synthetic data, raw-format parsers, preprocessing, TFDS storage, loader.

The trainer uses `load_dataset(...)` to get a `PreparedDataset` and `Loader` to batch a
split; serving uses `PreparedDataset.encoder` (or `Encoder.load(data_dir)`). Names are
imported on first use, so `jaxctr.data.feature_hash` (numpy only) loads without TFDS.
"""

import importlib

_EXPORTS = {
  "ArraySplit": "storage",
  "CtrConfig": "builders",
  "config_overrides": "builders",
  "DataError": "parsers",
  "DatasetInfo": "preprocess",
  "Encoder": "preprocess",
  "Loader": "loader",
  "PreparedDataset": "builders",
  "PreprocessConfig": "preprocess",
  "SplitSource": "storage",
  "SyntheticConfig": "synthetic",
  "SyntheticGenerator": "synthetic",
  "from_arrays": "memory",
  "auc": "synthetic",
  "load_dataset": "builders",
  "oracle_auc": "synthetic",
  "prefetch": "loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'jaxctr.data' has no attribute {name!r}")
  return getattr(importlib.import_module(f"jaxctr.data.{_EXPORTS[name]}"), name)
