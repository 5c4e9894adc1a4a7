"""Data pipeline: synthetic data, raw-format parsers, preprocessing, TFDS storage, loader.

The trainer uses `load_dataset(...)` to get a `PreparedDataset` and `Loader` to batch a
split; serving uses `PreparedDataset.encoder` (or `Encoder.load(data_dir)`).
"""

from jaxctr.data import behaviour_builders  # noqa: F401  (registers the behaviour builders)
from jaxctr.data.builders import CtrConfig, PreparedDataset, load_dataset
from jaxctr.data.loader import Loader, prefetch
from jaxctr.data.memory import from_arrays
from jaxctr.data.parsers import DataError
from jaxctr.data.preprocess import DatasetInfo, Encoder, PreprocessConfig
from jaxctr.data.storage import ArraySplit, SplitSource
from jaxctr.data.synthetic import SyntheticConfig, SyntheticGenerator, auc, oracle_auc

__all__ = [
  "ArraySplit",
  "CtrConfig",
  "DataError",
  "DatasetInfo",
  "Encoder",
  "Loader",
  "PreparedDataset",
  "PreprocessConfig",
  "SplitSource",
  "SyntheticConfig",
  "SyntheticGenerator",
  "from_arrays",
  "auc",
  "load_dataset",
  "oracle_auc",
  "prefetch",
]
