"""A loaded model version: raw values in, click probabilities out.

Batches are padded up to one of a few bucket sizes, each compiled (and run once) when the
version loads, so no request ever waits for a compilation and XLA sees few shapes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from absl import logging

from jaxctr.serving.artifact import Artifact
from jaxctr.serving.encoding import InputBuilder, RawEncoder, make_encoder

# Large buckets let concurrent large requests share one model call: each call has a fixed
# cost (a thread hop, concatenation, dispatch) that small batches pay per few hundred rows.
# Single-instance traffic still runs at the small buckets.
DEFAULT_BUCKETS = (1, 8, 32, 128, 512, 1024, 2048)
DEFAULT_MAX_BATCH = DEFAULT_BUCKETS[-1]


class ServableModel:
  """One exported version, ready to predict.

  Args:
    path: The version's directory (``MODEL_DIR/<version>``).
    buckets: Padded batch sizes; a batch runs at the smallest bucket that holds it, larger
      batches in chunks of the largest bucket.
    warm: Compile and run every bucket now.
  """

  def __init__(self, path: str, buckets: Sequence[int] = DEFAULT_BUCKETS, warm: bool = True):
    t0 = time.perf_counter()
    self.artifact = Artifact(path)
    self.version = self.artifact.version
    self.encoder = make_encoder(self.artifact)
    # Raw keys have a vectorised vocabulary lookup, run once per batch (`predict_batch`);
    # behaviour datasets' string tokens are encoded per request.
    self._keys_per_batch = isinstance(self.encoder, RawEncoder)
    self.inputs = InputBuilder(self.artifact)
    self.buckets = tuple(sorted(set(int(b) for b in buckets)))
    self.params = [jax.device_put(x) for x in self.artifact.params]
    call = self.artifact.exported.call
    if "raw_ids" not in self.artifact.schema:  # written before the forward pass took raw ids
      old = call
      call = lambda params, rows, ids, dhe, num, raw: old(params, rows, ids, dhe, num)
    self._call = jax.jit(call)
    if warm:
      self.warm()
    logging.info("loaded %s (buckets %s) in %.1fs", path, self.buckets, time.perf_counter() - t0)

  @property
  def max_bucket(self) -> int:
    return self.buckets[-1]

  @property
  def feature_names(self) -> list[str]:
    return self.encoder.names

  def warm(self) -> None:
    """Compiles and runs every bucket size once."""
    for b in self.buckets:
      cat = np.zeros((b, self.encoder.width), np.int32)
      num = np.zeros((b, len(self.encoder.num_names)), np.float32)
      self._run(cat, num)

  def _run(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    rows, ids, dhe, num, raw = self.inputs(cat, num)
    return np.asarray(self._call(self.params, rows, ids, dhe, num, raw))

  def predict_encoded(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Probabilities [B] of encoded ids [B, F] and prepared numeric values [B, N].

    For behaviour models ``cat`` is [B, F + sum(max_len)]: the histories' ids follow.
    """
    n = len(cat)
    out = np.empty(n, np.float32)
    for lo in range(0, n, self.max_bucket):
      hi = min(lo + self.max_bucket, n)
      m = hi - lo
      b = next(x for x in self.buckets if x >= m)
      c, x = cat[lo:hi], num[lo:hi]
      if b > m:  # pad with OOV ids and zeros; their outputs are dropped
        c = np.concatenate([c, np.zeros((b - m, c.shape[1]), c.dtype)])
        x = np.concatenate([x, np.zeros((b - m, x.shape[1]), x.dtype)])
      out[lo:hi] = self._run(c, x)[:m]
    return out

  def request_arrays(self, values, columnar: bool) -> tuple[np.ndarray, np.ndarray]:
    """A request's raw values (instances, or columns if ``columnar``) -> the arrays that
    `predict_batch` takes, concatenated over the requests of a batch: raw keys and numbers,
    or (behaviour datasets) encoded ids. Raises `RequestError` for bad values."""
    enc = self.encoder
    if self._keys_per_batch:
      return enc.parse_columns(values) if columnar else enc.parse_instances(values)
    return enc.encode_columns(values) if columnar else enc.encode_instances(values)

  def predict_batch(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Probabilities [B] of `request_arrays` outputs (of one or several requests)."""
    return self.predict_keys(a, b) if self._keys_per_batch else self.predict_encoded(a, b)

  def predict_instances(self, rows: Sequence[Mapping]) -> np.ndarray:
    """Probabilities of raw instances [{feature: raw value}, ...]."""
    return self.predict_encoded(*self.encoder.encode_instances(rows))

  def predict_columns(self, cols: Mapping[str, Sequence]) -> np.ndarray:
    """Probabilities of raw columns {feature: [raw values]}."""
    return self.predict_encoded(*self.encoder.encode_columns(cols))

  def predict_keys(self, keys: np.ndarray, num_raw: np.ndarray) -> np.ndarray:
    """Probabilities of parsed raw keys [B, F] and raw numbers [B, N] (NaN = missing)."""
    return self.predict_encoded(*self.encoder.encode_keys(keys, num_raw))
