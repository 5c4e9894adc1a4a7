"""The TensorFlow graph of a SavedModel export (see `jaxctr.serving.savedmodel`).

Mirrors `RawEncoder.encode_keys` and `InputBuilder` op for op in TensorFlow, then calls the
artifact's serialized forward pass through `jax2tf`. Imports TensorFlow: only
`savedmodel.convert` imports this module, after `savedmodel.check_supported` passed.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from jax.experimental import jax2tf

from jaxctr.embeddings import hashing
from jaxctr.embeddings.specs import SEQUENCE
from jaxctr.serving.artifact import Artifact
from jaxctr.serving.encoding import RawEncoder

BATCH = "(b, ...)"  # every input but the parameters: a symbolic batch dimension b


class ServingModule(tf.Module):
  """Raw keys and numbers -> click probabilities, all in TensorFlow.

  Args:
    artifact: A version `savedmodel.check_supported` accepts.
  """

  def __init__(self, artifact: Artifact):
    super().__init__(name="jaxctr")
    enc = RawEncoder(artifact)  # its constants, so the graph encodes as serving does
    self._num_cat, self._num_num = len(enc.cat_names), len(enc.num_names)
    self._transform = enc.transform
    self._fill = tf.constant(np.asarray(enc.fill, np.float64).reshape(1, -1), tf.float64)
    self._shift = tf.constant(np.asarray(enc.shift, np.float64).reshape(1, -1), tf.float64)
    self._scale = tf.constant(np.asarray(enc.scale, np.float64).reshape(1, -1), tf.float64)
    self.vocabs = []
    for keys, ids in enc.vocabs:
      if not len(keys):  # every key is out of vocabulary (StaticHashTable needs a key)
        self.vocabs.append(None)
        continue
      init = tf.lookup.KeyValueTensorInitializer(
        tf.constant(np.asarray(keys, np.int64)), tf.constant(np.asarray(ids, np.int64))
      )
      self.vocabs.append(tf.lookup.StaticHashTable(init, default_value=0))  # unseen -> OOV 0

    self._schema = artifact.schema
    self._plans = artifact.plans
    self._phys = {f.name: f for f in artifact.phys_features}
    self._cat_index = {n: i for i, n in enumerate(enc.cat_names)}
    self._stacks = [(s.name, s.rows, s.columns) for s in artifact.stacks]
    # Tables in the artifact's storage dtype: int8 and fp16 rows widen to fp32 when gathered,
    # as `Stack.gather` does.
    self.tables = [tf.Variable(np.asarray(s.table), trainable=False) for s in artifact.stacks]
    self.scales = [
      None if s.scale is None else tf.Variable(np.asarray(s.scale), trainable=False)
      for s in artifact.stacks
    ]
    self.params = [tf.Variable(np.asarray(p), trainable=False) for p in artifact.params]

    call = artifact.exported.call
    if "raw_ids" not in self._schema:  # written before the forward pass took raw ids
      old = call
      call = lambda params, rows, ids, dhe, num, raw: old(params, rows, ids, dhe, num)
    self._forward = jax2tf.convert(
      call,
      polymorphic_shapes=[None, BATCH, BATCH, BATCH, BATCH, BATCH],
      native_serialization_platforms=tuple(self._schema.get("platforms") or ("cpu",)),
      with_gradient=False,
    )
    self.serve = tf.function(
      self._serve,
      input_signature=[
        tf.TensorSpec([None, self._num_cat], tf.int64, name="keys"),
        tf.TensorSpec([None, self._num_num], tf.float64, name="numbers"),
      ],
    )

  # ------------------------------------------------------------------ encoding
  def _ids(self, keys: tf.Tensor) -> tf.Tensor:
    """Raw keys [B, F] -> vocabulary ids int64 [B, F] (`RawEncoder.encode_keys`)."""
    cols = []
    for f, table in enumerate(self.vocabs):
      col = keys[:, f]
      cols.append(tf.zeros_like(col) if table is None else table.lookup(col))
    return tf.stack(cols, axis=1) if cols else tf.zeros_like(keys)

  def _numbers(self, x: tf.Tensor) -> tf.Tensor:
    """Raw numbers [B, N] (NaN = missing) -> prepared float32 (`RawEncoder.encode_numbers`)."""
    x = tf.where(tf.math.is_nan(x), self._fill, x)
    if self._transform != "none":
      x = tf.sign(x) * tf.math.log1p(tf.abs(x))
    if self._transform == "log1p_standardize":
      x = (x - self._shift) / self._scale
    return tf.cast(x, tf.float32)

  def _inputs(self, cat: tf.Tensor, num: tf.Tensor):
    """Ids [B, F] and prepared numbers -> the forward's (rows, ids, dhe, num, raw), as
    `InputBuilder` makes them."""
    cols, dhe = {}, {}
    for p in self._plans:
      f = p.feature
      ids = cat[:, self._cat_index[f.name], None]
      if p.method == "dhe":
        dhe[f.name] = tf.cast(ids[:, 0], tf.int32)
      elif p.method == "full":
        cols[f.name] = ids
      else:  # qr (`encoders.transform`); vocabulary ids are never negative
        m = p.table.encoder.num_buckets
        q_rows = hashing.quotient_rows(p.table.vocab_size, m)
        cols[f"{f.name}/q"] = tf.math.floormod(tf.math.floordiv(ids, m), q_rows)
        cols[f"{f.name}/r"] = tf.math.floormod(ids, m)
    rows, ids_out = {}, {}
    for i, (name, n_rows, columns) in enumerate(self._stacks):
      blocks = []
      for c in columns:
        f = self._phys[c["feature"]]
        x = cols[f.name]
        if f.kind == SEQUENCE:  # embedding methods' sub-features: -1 = no row
          x = tf.where(x >= 0, x + c["offset"], n_rows)
        else:
          x = x + c["offset"]
        blocks.append(x)
      flat = tf.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]
      ids_out[name] = tf.cast(flat, tf.int32)
      rows[name] = self._gather(i, flat, n_rows)
    raw = {"cat": tf.cast(cat, tf.int32)} if "cat" in (self._schema.get("raw_ids") or {}) else {}
    return rows, ids_out, dhe, num, raw

  def _gather(self, i: int, ids: tf.Tensor, n_rows: int) -> tf.Tensor:
    """fp32 rows [B, C, D] of stack i (`Stack.gather`): the padding id reads zeros."""
    valid = ids < n_rows
    safe = tf.where(valid, ids, tf.zeros_like(ids))
    out = tf.cast(tf.gather(self.tables[i], safe), tf.float32)
    if self.scales[i] is not None:
      out = out * tf.gather(self.scales[i], safe)
    return tf.where(valid[..., None], out, tf.zeros_like(out))

  # ------------------------------------------------------------------- serving
  def _serve(self, keys: tf.Tensor, numbers: tf.Tensor) -> dict[str, tf.Tensor]:
    cat = self._ids(keys)
    rows, ids, dhe, num, raw = self._inputs(cat, self._numbers(numbers))
    probs = self._forward(list(self.params), rows, ids, dhe, num, raw)
    return {"probabilities": tf.reshape(tf.cast(probs, tf.float32), [-1])}
