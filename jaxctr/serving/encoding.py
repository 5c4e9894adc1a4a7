"""Raw request values -> the model's inputs, exactly as training encoded them.

Two steps, both numpy on the host:

1. `RawEncoder`: raw categorical values -> the raw int64 keys the dataset's parser makes
   (Criteo: the value of the 8-hex-digit token; Avazu: a 63-bit FNV hash of the cell text;
   libFM and synthetic data: the integer itself; missing: -1), then the training
   vocabulary's ids (unseen keys -> the OOV id 0); raw numbers -> the prepared values
   (missing filled, signed log1p, standardised with the training statistics), as
   `jaxctr.data.preprocess.Encoder` does.
   Behaviour datasets (`TokenEncoder`) hold string tokens instead: raw categorical values
   and histories (a separator-joined string as in the raw files, or a JSON list of raw
   tokens) are encoded by the functions preparation ran (`jaxctr.data.sequences`) with the
   saved token vocabularies; the padded history ids ride in ``cat`` after the categorical
   ids (see `TokenEncoder`).
2. `InputBuilder`: encoded ids -> per stack the id columns (with the embedding methods' id
   transforms of `jaxctr.embeddings.encoders`) and their rows gathered from the tables,
   plus the raw ids of DHE features (and of the search keys of models that read raw ids):
   the arguments of the exported forward pass.

Bad values raise `RequestError` naming the feature and the instance.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Mapping, Sequence

import numpy as np

from jaxctr import crosses as crosses_lib
from jaxctr.data import sequences
from jaxctr.embeddings import encoders
from jaxctr.embeddings.specs import CATEGORICAL, NUMERIC, SEQUENCE, FeatureSpec
from jaxctr.serving.artifact import Artifact

MISSING_KEY = -1
_FNV_OFFSET = np.uint64(1469598103934665603)  # the parser's constant (jaxctr.data.parsers)
_FNV_PRIME = np.uint64(1099511628211)


class RequestError(ValueError):
  """A request is malformed; the message names the problem (answered with HTTP 400)."""


def avazu_key(text: str) -> int:
  """The Avazu parser's key of one cell: 64-bit FNV-style hash of its bytes, >> 1."""
  if not text:
    return MISSING_KEY
  h = _FNV_OFFSET
  with np.errstate(over="ignore"):
    for b in text.encode():
      h = (h ^ np.uint64(b)) * _FNV_PRIME
  return int(h >> np.uint64(1))


def criteo_key(text: str) -> int:
  """The Criteo parser's key of one cell: the value of its 8 hex digits."""
  if not text:
    return MISSING_KEY
  if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
    raise ValueError("expected 8 hex digits")
  return int(text, 16)


_NUMBER_TYPES = {int, float, type(None)}
_HEX = np.full(256, 255, np.uint8)  # byte -> hex digit value; 255: not a hex digit
for _i, _c in enumerate("0123456789abcdef"):
  _HEX[ord(_c)] = _HEX[ord(_c.upper())] = _i


_NULL8 = "\0" * 8  # a missing value's stand-in below: NUL is no hex digit
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_HEX8 = re.compile("[0-9a-fA-F]{8}")


def _criteo_keys_fast(values: Sequence) -> np.ndarray | None:
  """`criteo_key` of a column of 8-hex-digit strings and nulls; None if any value is not."""
  # One ASCII buffer of all values, checked with numpy: a per-value conversion of strings
  # to bytes would cost more than all the rest of a request's encoding.
  values = values if isinstance(values, list) else list(values)
  if len(values) <= 64:  # a few values (one instance): numpy's per-call costs dominate
    keys = []
    for v in values:
      if v is None or v == "":
        keys.append(MISSING_KEY)
      elif type(v) is str and _HEX8.fullmatch(v):
        keys.append(int(v, 16))
      else:
        return None
    return np.array(keys, np.int64)
  try:
    buf = "\t".join([v or _NULL8 for v in values]).encode("ascii")  # falsy: missing (or bad)
  except (TypeError, UnicodeEncodeError):  # a value that is not a string, or not ASCII
    return None
  if len(buf) != 9 * len(values) - 1:
    return None
  raw = np.frombuffer(buf + b"\t", np.uint8).reshape(len(values), 9)
  # Tabs exactly every 9th byte and hex digits or NULs elsewhere: every value has 8
  # characters (a value with a tab would put a tab where a digit is).
  if (raw[:, 8] != 9).any():
    return None
  raw = np.ascontiguousarray(raw[:, :8])
  digits = np.take(_HEX, raw)
  blank = raw.view(np.uint64)[:, 0] == 0
  # A non-hex byte's value has high bits; only the blanks may have one, and the blanks must
  # be the nulls and empty strings (not 0, false or a client's 8 NULs).
  if ((digits.view(np.uint64)[:, 0] & _HIGH_NIBBLES) != 0).sum() != blank.sum():
    return None
  if blank.any() and blank.sum() != values.count(None) + values.count(""):
    return None
  packed = (digits[:, 0::2] << 4) | digits[:, 1::2]  # [n, 4] bytes, most significant first
  keys = np.ascontiguousarray(packed).view(">u4")[:, 0].astype(np.int64)
  keys[blank] = MISSING_KEY
  return keys


def _numbers_fast(values: Sequence) -> np.ndarray | None:
  """float64 of ints, floats and nulls (-> NaN); None if any is another type, NaN or inf."""
  types = set(map(type, values))
  if not types <= _NUMBER_TYPES:
    return None
  try:
    x = np.array(values, np.float64)
  except (OverflowError, TypeError, ValueError):
    return None
  if float in types:  # a NaN or inf sent as a number (not as null) is refused
    bad = ~np.isfinite(x)
    if bad.any() and (bad & np.array([v is not None for v in values])).any():
      return None
  elif np.isinf(x).any():  # an integer beyond float64
    return None
  return x


def _int_key(text: str) -> int:
  return int(text) if text else MISSING_KEY


class RawEncoder:
  """Raw values of the dataset's features -> (cat ids int32 [B, F], num float32 [B, N])."""

  def __init__(self, artifact: Artifact):
    info = artifact.schema["dataset"]
    feats = info["features"]
    if any(f["kind"] == SEQUENCE for f in feats):
      raise ValueError(f"{artifact.path}: sequence features are encoded by TokenEncoder")
    self.seq_names: list[str] = []
    self.cat_names = [f["name"] for f in feats if f["kind"] == CATEGORICAL]
    self.num_names = [f["name"] for f in feats if f["kind"] == NUMERIC]
    self.names = self.cat_names + self.num_names
    self.width = len(self.cat_names)
    self._name_set = set(self.names)
    self.source_format = info.get("source_format", "")
    # Avazu's expanded hour columns are integers in the parser too; every other Avazu column
    # is hashed text.
    str_key = {"criteo": criteo_key, "avazu": avazu_key}.get(self.source_format, _int_key)
    self._str_key = [
      _int_key if n in ("hour_of_day", "weekday", "hour") else str_key for n in self.cat_names
    ]
    self._hash_ints = [self.source_format == "avazu" and k is avazu_key for k in self._str_key]
    self.vocabs = []
    for keys, ids in artifact.vocabs:  # sorted keys for binary search (as preparation keeps them)
      if len(keys) > 1 and not (np.diff(keys) > 0).all():
        order = np.argsort(keys, kind="stable")
        keys, ids = keys[order], ids[order]
      self.vocabs.append((keys, ids))
    self._joint = _joint_vocab(self.vocabs)
    pre = info.get("preprocess", {})
    self.transform = pre.get("numeric_transform", "log1p_standardize")
    st = info.get("numeric_stats", ())
    fill = pre.get("numeric_fill", "zero")
    self.fill = np.array([s["mean"] if fill == "mean" else 0.0 for s in st])
    self.shift = np.array([s["log1p_mean"] for s in st])
    self.scale = np.array([s["log1p_std"] if s["log1p_std"] > 0 else 1.0 for s in st])

  # ------------------------------------------------------------------ raw keys
  def cat_keys(self, j: int, values: Sequence, row0: int = 0) -> np.ndarray:
    """Raw keys of categorical feature j's values (int, str or None)."""
    if self._str_key[j] is criteo_key:  # the common case, vectorised
      fast = _criteo_keys_fast(values)
      if fast is not None:
        return fast
    return self._cat_keys_slow(j, values, row0)

  def _cat_keys_slow(self, j: int, values: Sequence, row0: int) -> np.ndarray:
    name = self.cat_names[j]
    out = np.empty(len(values), np.int64)
    to_key, hash_ints = self._str_key[j], self._hash_ints[j]
    for i, v in enumerate(values):
      if v is None:
        out[i] = MISSING_KEY
      elif isinstance(v, str):
        try:
          out[i] = to_key(v)
        except ValueError as e:
          raise RequestError(
            f"instance {row0 + i}: feature {name!r}: bad value {v!r} ({e})"
          ) from None
      elif isinstance(v, int) and not isinstance(v, bool):
        if not -(2**63) <= v < 2**63:
          raise RequestError(f"instance {row0 + i}: feature {name!r}: {v} is out of int64 range")
        out[i] = avazu_key(str(v)) if hash_ints else v
      else:
        raise RequestError(
          f"instance {row0 + i}: feature {name!r}: expected a string, an integer or null, got "
          f"{type(v).__name__} {v!r}"
        )
    return out

  def num_values(self, j: int, values: Sequence, row0: int = 0) -> np.ndarray:
    """Raw numbers (null = missing; NaN and infinities are refused)."""
    x = _numbers_fast(values)
    return x if x is not None else self._num_values_slow(j, values, row0)

  def _num_values_slow(self, j: int, values: Sequence, row0: int) -> np.ndarray:
    name = self.num_names[j]
    out = np.empty(len(values), np.float64)
    for i, v in enumerate(values):
      if v is None:
        out[i] = np.nan
      elif isinstance(v, (int, float)) and not isinstance(v, bool):
        if not math.isfinite(v):
          raise RequestError(
            f"instance {row0 + i}: feature {name!r}: {v} is not allowed (send null for missing)"
          )
        out[i] = v
      else:
        raise RequestError(
          f"instance {row0 + i}: feature {name!r}: expected a number or null, got "
          f"{type(v).__name__} {v!r}"
        )
    return out

  # ---------------------------------------------------------------- encoding
  def encode_keys(self, keys: np.ndarray, num_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw keys int64 [B, F] and raw numbers [B, N] (NaN = missing) -> model ids and values."""
    keys = np.asarray(keys, np.int64).reshape(len(keys), len(self.cat_names))
    if self._joint is not None and keys.size and keys.min() >= -1 and keys.max() < _KEY_END:
      codes, ids = self._joint  # every feature's lookups in one search
      q = (keys + 1) | (np.arange(keys.shape[1], dtype=np.int64) << _KEY_BITS)
      pos = np.minimum(np.searchsorted(codes, q), len(codes) - 1)
      cat = np.where(codes[pos] == q, ids[pos], 0)  # unseen keys -> OOV id 0
      return cat, self.encode_numbers(num_raw, len(keys))
    cat = np.empty(keys.shape, np.int32)
    for f, (vk, vi) in enumerate(self.vocabs):
      if not len(vk):  # every key is out of vocabulary
        cat[:, f] = 0
        continue
      pos = np.minimum(np.searchsorted(vk, keys[:, f]), len(vk) - 1)
      cat[:, f] = np.where(vk[pos] == keys[:, f], vi[pos], 0)  # unseen keys -> OOV id 0
    return cat, self.encode_numbers(num_raw, len(keys))

  def encode_numbers(self, num_raw: np.ndarray, n: int) -> np.ndarray:
    """Raw numbers [n, N] (NaN = missing) -> the model's prepared values."""
    x = np.asarray(num_raw, np.float64).reshape(n, len(self.num_names))
    x = np.where(np.isnan(x), self.fill, x)
    if self.transform != "none":
      x = np.copysign(np.log1p(np.abs(x)), x)
    if self.transform == "log1p_standardize":
      x = (x - self.shift) / self.scale
    return x.astype(np.float32)

  def encode_columns(self, cols: Mapping[str, Sequence]) -> tuple[np.ndarray, np.ndarray]:
    """{feature: values} (every feature, equal lengths) -> (cat ids, num values)."""
    return self.encode_keys(*self.parse_columns(cols))

  def encode_instances(self, rows: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    """[{feature: value}, ...] -> (cat ids, num values)."""
    return self.encode_keys(*self.parse_instances(rows))

  def parse_columns(self, cols: Mapping[str, Sequence]) -> tuple[np.ndarray, np.ndarray]:
    """{feature: values} -> raw keys [B, F] and raw numbers [B, N] (for `encode_keys`)."""
    check_names(cols, self.names)
    lens = {len(v) for v in cols.values()}
    if len(lens) != 1:
      raise RequestError(f"features have different numbers of values: {sorted(lens)}")
    (n,) = lens
    cat = [v for name in self.cat_names for v in cols[name]]  # feature-major
    num = [v for name in self.num_names for v in cols[name]]
    return self._keys(cat, n, rows_first=False), self._numbers(num, n, rows_first=False)

  def parse_instances(self, rows: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    """[{feature: value}, ...] -> raw keys [B, F] and raw numbers [B, N] (for `encode_keys`)."""
    n = len(rows)
    flat = self._same_order_values(rows)
    if flat is not None:
      return self._keys(flat[0], n, True), self._numbers(flat[1], n, True)
    names = self._name_set
    for i, r in enumerate(rows):
      if not isinstance(r, Mapping):
        raise RequestError(
          f"instance {i}: expected an object of feature values, got {type(r).__name__}"
        )
      if r.keys() != names:
        check_names(r, self.names, where=f"instance {i}: ")
    cat = [r[name] for r in rows for name in self.cat_names]  # row-major
    num = [r[name] for r in rows for name in self.num_names]
    return self._keys(cat, n, True), self._numbers(num, n, True)

  def _same_order_values(self, rows: Sequence) -> tuple[list, list] | None:
    """Row-major categorical and numeric values of rows that are dicts of every feature in
    one key order (as clients send them), read by position; None for other rows."""
    if not rows or set(map(type, rows)) != {dict}:
      return None
    order = tuple(rows[0])
    if len(order) != len(self.names) or not self._name_set.issuperset(order):
      return None
    if not all(tuple(r) == order for r in rows):
      return None
    pos = {k: i for i, k in enumerate(order)}
    values = list(map(tuple, map(dict.values, rows)))
    cat = itertools.chain.from_iterable(map(_getter([pos[k] for k in self.cat_names]), values))
    num = itertools.chain.from_iterable(map(_getter([pos[k] for k in self.num_names]), values))
    return list(cat), list(num)

  def _columns(self, flat: list, n: int, width: int, rows_first: bool) -> list[list]:
    if rows_first:
      return [flat[j::width] for j in range(width)]
    return [flat[j * n : (j + 1) * n] for j in range(width)]

  def _keys(self, flat: list, n: int, rows_first: bool) -> np.ndarray:
    """Raw keys [n, F] of all categorical values at once (per column if that fails)."""
    f = len(self.cat_names)
    if f and all(k is criteo_key for k in self._str_key):
      fast = _criteo_keys_fast(flat)
      if fast is not None:
        return fast.reshape(n, f) if rows_first else fast.reshape(f, n).T
    keys = np.empty((n, f), np.int64)
    for j, col in enumerate(self._columns(flat, n, f, rows_first)):
      keys[:, j] = self.cat_keys(j, col)
    return keys

  def _numbers(self, flat: list, n: int, rows_first: bool) -> np.ndarray:
    """Raw numbers [n, N] (NaN = missing) of all numeric values at once."""
    m = len(self.num_names)
    x = _numbers_fast(flat)
    if x is not None:
      return x.reshape(n, m) if rows_first else x.reshape(m, n).T
    num = np.empty((n, m), np.float64)
    for j, col in enumerate(self._columns(flat, n, m, rows_first)):
      num[:, j] = self.num_values(j, col)
    return num


def _getter(index: Sequence[int]):
  """row tuple -> a tuple of its values at ``index``."""
  index = list(index)
  if index and index == list(range(index[0], index[0] + len(index))):  # a slice is faster
    return operator.itemgetter(slice(index[0], index[0] + len(index)))
  if len(index) == 1:  # itemgetter of one index returns the value itself
    (i,) = index
    return lambda r: (r[i],)
  return operator.itemgetter(*index) if index else lambda r: ()


_KEY_BITS = 33  # a key + 1 of up to 32 bits (the missing key -1 -> 0), then the feature index
_KEY_END = (1 << _KEY_BITS) - 1  # keys below it fit


def _joint_vocab(vocabs) -> tuple[np.ndarray, np.ndarray] | None:
  """All vocabularies as one sorted array of (feature, key) codes, and their ids.

  None if a key does not fit (Avazu's 63-bit hashes): those are looked up per feature.
  """
  if not vocabs or not any(len(k) for k, _ in vocabs):
    return None
  if any(len(k) and (k[0] < -1 or k[-1] >= _KEY_END) for k, _ in vocabs):
    return None
  codes = [
    (np.asarray(k, np.int64) + 1) | (np.int64(f) << _KEY_BITS) for f, (k, _) in enumerate(vocabs)
  ]
  ids = [np.asarray(i, np.int32) for _, i in vocabs]
  return np.concatenate(codes), np.concatenate(ids)


class TokenEncoder:
  """Raw values of a behaviour dataset -> (ids int32 [B, F + sum(max_len)], num [B, 0]).

  The categorical values are raw tokens (strings; integers are read as their decimal text,
  null as the blank cell), each history a separator-joined string or a list of raw tokens.
  Both are encoded by the functions preparation used (`TokenVocabulary.encode`,
  `sequences.tokens_of`/`split_tokens`, `sequences.encode_column`): unseen tokens map to the
  OOV id 0, histories are truncated and padded (-1) as the artifact's schema records. The
  encoded row is the categorical ids followed by each history's ``max_len`` ids, so the
  batcher and `ServableModel` handle it like any ``cat`` matrix.
  """

  def __init__(self, artifact: Artifact):
    info = artifact.schema["dataset"]
    feats = info["features"]
    self.source_format = info.get("source_format", "")
    self.cat_names = [f["name"] for f in feats if f["kind"] == CATEGORICAL]
    self.num_names = [f["name"] for f in feats if f["kind"] == NUMERIC]
    if self.num_names:
      raise ValueError(f"{artifact.path}: behaviour datasets have no numeric features")
    by_name = {c.name: c for c in sequences.columns_from_json(artifact.schema["sequences"])}
    self.seq_names = [f["name"] for f in feats if f["kind"] == SEQUENCE]
    self.columns = [by_name[n] for n in self.seq_names]
    vocabs = dict(
      zip(
        sequences.vocabulary_tables(self.cat_names, self.columns),
        (sequences.TokenVocabulary.from_arrays(k, i) for k, i in artifact.vocabs),
        strict=True,
      )
    )
    self.vocabs = [vocabs[n] for n in self.cat_names]
    self.seq_vocabs = [vocabs[c.share_embedding or c.name] for c in self.columns]
    self.names = self.cat_names + self.seq_names
    self._name_set = set(self.names)
    self.width = len(self.cat_names) + sum(c.max_len for c in self.columns)

  def _token(self, name: str, v, row: int) -> str:
    if v is None:
      return ""
    if isinstance(v, str):
      return v
    if isinstance(v, int) and not isinstance(v, bool):
      return str(v)
    raise RequestError(
      f"instance {row}: feature {name!r}: expected a string, an integer or null, got "
      f"{type(v).__name__} {v!r}"
    )

  def _encode(self, get, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``get(name)`` -> that feature's n raw values."""
    out = np.empty((n, self.width), np.int32)
    for j, (name, vocab) in enumerate(zip(self.cat_names, self.vocabs, strict=True)):
      toks = [self._token(name, v, i) for i, v in enumerate(get(name))]
      out[:, j] = vocab.encode(np.asarray(toks, dtype=object)) if n else 0
    lo = len(self.cat_names)
    for col, vocab in zip(self.columns, self.seq_vocabs, strict=True):
      lists = []
      for i, v in enumerate(get(col.name)):
        try:
          lists.append(sequences.tokens_of(v, col.separator))
        except ValueError as e:
          raise RequestError(f"instance {i}: feature {col.name!r}: {e}") from None
      out[:, lo : lo + col.max_len] = sequences.encode_column(lists, col, vocab)
      lo += col.max_len
    return out, np.zeros((n, 0), np.float32)

  def encode_instances(self, rows: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray]:
    """[{feature: raw value}, ...] -> (ids, num)."""
    for i, r in enumerate(rows):
      if not isinstance(r, Mapping):
        raise RequestError(
          f"instance {i}: expected an object of feature values, got {type(r).__name__}"
        )
      if r.keys() != self._name_set:
        check_names(r, self.names, where=f"instance {i}: ")
    return self._encode(lambda name: [r[name] for r in rows], len(rows))

  def encode_columns(self, cols: Mapping[str, Sequence]) -> tuple[np.ndarray, np.ndarray]:
    """{feature: raw values} (every feature, equal lengths) -> (ids, num)."""
    check_names(cols, self.names)
    lens = {len(v) for v in cols.values()}
    if len(lens) != 1:
      raise RequestError(f"features have different numbers of values: {sorted(lens)}")
    return self._encode(lambda name: cols[name], lens.pop())

  def encode_keys(self, keys, num_raw):
    raise ValueError(
      f"the model was trained on {self.source_format!r} data, whose raw values are tokens, "
      "not parsed integer keys; send feature values (encode_instances / encode_columns)"
    )


def make_encoder(artifact: Artifact) -> RawEncoder | TokenEncoder:
  """The raw-value encoder of an artifact: tokens for behaviour datasets, else keys."""
  return TokenEncoder(artifact) if artifact.schema.get("sequences") else RawEncoder(artifact)


def check_names(given, expected: Sequence[str], where: str = "") -> None:
  unknown = [k for k in given if k not in set(expected)]
  if unknown:
    raise RequestError(f"{where}unknown feature {unknown[0]!r}; expected {list(expected)}")
  missing = [k for k in expected if k not in given]
  if missing:
    raise RequestError(f"{where}missing feature {missing[0]!r}")


class InputBuilder:
  """Encoded ids and values -> the exported forward pass's (rows, ids, dhe, num, raw)."""

  def __init__(self, artifact: Artifact):
    self.artifact = artifact
    self.cat_index = {
      f.name: i for i, f in enumerate(f for f in artifact.features if f.kind == CATEGORICAL)
    }
    # Histories ride in the encoded ids after the categorical columns, in the dataset's
    # order (see TokenEncoder).
    self.seq_slices, lo = {}, len(self.cat_index)
    for f in artifact.schema["dataset"]["features"]:
      if f["kind"] == SEQUENCE:
        self.seq_slices[f["name"]] = slice(lo, lo + f["max_len"])
        lo += f["max_len"]
    self.plans = artifact.plans
    self.phys = {f.name: f for f in artifact.phys_features}
    # Wide & Deep's and OptInter's crosses: hashed pairs of encoded ids, as the trainer's
    # loader makes them.
    self.crosses = {}
    cross = artifact.schema.get("crosses") or []
    if isinstance(cross, dict):  # artifacts of Wide & Deep written before OptInter's
      cross = [{"key": crosses_lib.CROSS_KEY, **cross}]
    dataset = [FeatureSpec.from_json(f) for f in artifact.schema["dataset"]["features"]]
    for c in cross:
      self.crosses[c["key"]] = crosses_lib.Crosses(
        c["pairs"], c["num_buckets"], dataset, seed=c["seed"], key=c["key"]
      )

  def __call__(self, cat: np.ndarray, num: np.ndarray):
    cols = {}
    dhe = {}
    cat_only = cat[:, : len(self.cat_index)]
    for p in self.plans:
      f = p.feature
      if f.name in self.crosses:
        cols[f.name] = self.crosses[f.name].ids({"cat": cat_only})
        continue
      if f.kind == SEQUENCE:
        ids = cat[:, self.seq_slices[f.name]]
      else:
        ids = cat[:, self.cat_index[f.name], None]
      if p.method == "dhe":
        dhe[f.name] = np.asarray(ids[:, 0], np.int32)
      elif p.method == "full":
        cols[f.name] = ids
      else:
        cols.update(encoders.transform(p, ids))
    rows, ids_out = {}, {}
    for s in self.artifact.stacks:
      blocks = []
      for c in s.columns:
        f = self.phys[c["feature"]]
        x = np.asarray(cols[f.name], np.int64)
        if f.kind == SEQUENCE:  # histories and embedding methods' sub-features: -1 = no row
          x = np.where(x >= 0, x + c["offset"], s.rows)
        else:
          x = x + c["offset"]
        blocks.append(x)
      flat = np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]
      ids_out[s.name] = flat.astype(np.int32)
      rows[s.name] = s.gather(flat)
    raw = {}  # the raw id columns of models that search with them (schema "raw_ids")
    for k in self.artifact.schema.get("raw_ids") or {}:
      raw[k] = np.asarray(cat_only if k == "cat" else cat[:, self.seq_slices[k]], np.int32)
    return rows, ids_out, dhe, np.asarray(num, np.float32), raw
