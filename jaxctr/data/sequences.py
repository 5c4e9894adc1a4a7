"""Sequence (behaviour-history) columns: declaration, padding/truncation and vocabularies.

A sequence column holds a variable number of ids per row (e.g. the items a user clicked
before, oldest first), stored as a fixed-width int32 matrix ``[n, max_len]`` with -1 at
padded positions; the embedding layer turns -1 into a zero row and a 0 in the mask
(`jaxctr.embeddings.collection`). ``share_embedding`` makes a history column read the rows
of its target field's table (item_history with item_id), so both share one vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from jaxctr.data.parsers import DataError
from jaxctr.embeddings.specs import CATEGORICAL, SEQUENCE, FeatureSpec

PAD = -1
SIDES = ("pre", "post")


@dataclasses.dataclass(frozen=True)
class SequenceColumn:
  """How one raw text column becomes a padded id sequence.

  Attributes:
    name: Column name (in the raw header and in the prepared data).
    separator: Token separator inside the field (BARS uses ``^``).
    max_len: Stored length; longer sequences are truncated, shorter ones padded.
    padding: ``pre`` (pad at the start: the most recent behaviour stays in the last
      column, the Keras/DIN convention) or ``post``.
    truncation: ``pre`` drops the oldest tokens (keeps the last ``max_len``), ``post``
      the newest.
    share_embedding: Name of the categorical field whose table (and vocabulary) this
      sequence reads, e.g. ``item_id`` for ``item_history``; "" for its own table.
    pooling: Declared pooling (``sum``, ``mean``, ``max`` or ``none``); a behaviour model
      asks for ``none`` itself (see `jaxctr.features.model_features`).
  """

  name: str
  separator: str = "^"
  max_len: int = 50
  padding: str = "pre"
  truncation: str = "pre"
  share_embedding: str = ""
  pooling: str = "sum"

  def __post_init__(self):
    if self.max_len < 1:
      raise DataError(f"sequence column {self.name!r}: max_len must be >= 1, got {self.max_len}")
    for key in ("padding", "truncation"):
      if getattr(self, key) not in SIDES:
        raise DataError(
          f"sequence column {self.name!r}: {key} must be one of {SIDES}, got {getattr(self, key)!r}"
        )
    if not self.separator:
      raise DataError(f"sequence column {self.name!r}: empty separator")


def pad_sequences(
  seqs: Sequence[np.ndarray], max_len: int, padding: str = "pre", truncation: str = "pre"
) -> np.ndarray:
  """Variable-length int sequences -> [n, max_len] int32 padded with -1."""
  out = np.full((len(seqs), max_len), PAD, np.int32)
  for i, s in enumerate(seqs):
    s = np.asarray(s)
    if len(s) > max_len:
      s = s[-max_len:] if truncation == "pre" else s[:max_len]
    if len(s):
      if padding == "pre":
        out[i, max_len - len(s) :] = s
      else:
        out[i, : len(s)] = s
  return out


def mask(padded: np.ndarray) -> np.ndarray:
  """1.0 at real positions, 0.0 at padding."""
  return (np.asarray(padded) != PAD).astype(np.float32)


def split_tokens(field: str, separator: str) -> list[str]:
  """A raw sequence field -> its tokens (an empty field is an empty sequence)."""
  return [t for t in field.split(separator) if t != ""] if field else []


def tokens_of(value, separator: str) -> list[str]:
  """A raw sequence value -> its tokens, as preparation splits the raw files' fields.

  Args:
    value: The separator-joined text of the raw files (``"105^102"``), a list of raw
      tokens (strings or integers: ``["105", 102]``), or None (no behaviour).
    separator: The column's separator.

  Raises:
    ValueError: Any other value; the message says what was expected.
  """
  if value is None:
    return []
  if isinstance(value, str):
    return split_tokens(value, separator)
  if isinstance(value, (list, tuple)):
    out = []
    for t in value:
      if isinstance(t, bool) or not isinstance(t, (str, int)):
        raise ValueError(
          f"history tokens must be strings or integers, got {type(t).__name__} {t!r}"
        )
      if t != "":  # as split_tokens: an empty token is no behaviour
        out.append(str(t))
    return out
  raise ValueError(
    f"expected a {separator!r}-joined string or a list of tokens, got {type(value).__name__}"
  )


def encode_column(
  token_lists: Sequence[Sequence[str]], column: SequenceColumn, vocab: TokenVocabulary
) -> np.ndarray:
  """Token lists (oldest first) -> the stored [n, max_len] int32 ids, -1 at padding.

  The one encoding of a history: preparation (`behaviour_builders`) and serving
  (`jaxctr.serving.encoding`) both call it.
  """
  flat = [t for seq in token_lists for t in seq]
  ids = vocab.encode(np.asarray(flat, dtype=object)) if flat else np.zeros(0, np.int32)
  ends = np.cumsum([len(seq) for seq in token_lists])
  parts = np.split(ids, ends[:-1]) if len(ends) else []
  return pad_sequences(parts, column.max_len, column.padding, column.truncation)


class TokenVocabulary:
  """String tokens -> ids 1..n by descending training count (0: OOV and rare tokens).

  Stored as the classic builders store theirs (`jaxctr.data.preprocess.Vocabulary`): the
  sorted keys (here the token strings) and their ids; see `save_vocabularies`.
  """

  def __init__(self, tokens: Iterable[str], min_count: int = 1):
    values, counts = np.unique(
      np.asarray(list(tokens), dtype=object).astype(str), return_counts=True
    )
    keep = counts >= min_count
    values, counts = values[keep], counts[keep]
    order = np.lexsort((values, -counts))  # by count, ties by token: deterministic
    self.tokens = values[order]
    self._sorted = np.sort(self.tokens)
    self._ids = np.empty(len(self.tokens), np.int32)
    self._ids[np.searchsorted(self._sorted, self.tokens)] = np.arange(1, len(self.tokens) + 1)

  @classmethod
  def from_arrays(cls, keys: np.ndarray, ids: np.ndarray) -> TokenVocabulary:
    """The vocabulary of sorted token strings ``keys`` and their ``ids`` (as saved)."""
    keys = np.asarray(keys).astype(str)
    ids = np.asarray(ids, np.int32)
    if len(keys) != len(ids) or (len(keys) > 1 and not (keys[1:] > keys[:-1]).all()):
      raise DataError("token vocabulary: keys must be sorted, distinct and as many as ids")
    v = cls.__new__(cls)
    v._sorted, v._ids = keys, ids
    v.tokens = keys[np.argsort(ids, kind="stable")]
    return v

  @classmethod
  def identity(cls, size: int) -> TokenVocabulary:
    """Tokens "1".."size-1" -> themselves (synthetic data, whose ids are already dense)."""
    ids = np.arange(1, size, dtype=np.int32)
    keys = ids.astype(str)
    order = np.argsort(keys, kind="stable")
    return cls.from_arrays(keys[order], ids[order])

  @property
  def keys(self) -> np.ndarray:
    """The tokens, sorted (the saved form)."""
    return self._sorted

  @property
  def ids(self) -> np.ndarray:
    """The id of each of `keys`."""
    return self._ids

  @property
  def size(self) -> int:
    """Rows of the table: the tokens plus the OOV id 0."""
    return len(self.tokens) + 1

  def encode(self, tokens: np.ndarray) -> np.ndarray:
    tokens = np.asarray(tokens).astype(str)
    if not len(self._sorted):
      return np.zeros(tokens.shape, np.int32)
    pos = np.clip(np.searchsorted(self._sorted, tokens), 0, len(self._sorted) - 1)
    return np.where(self._sorted[pos] == tokens, self._ids[pos], 0).astype(np.int32)


def vocabulary_tables(categorical: Sequence[str], columns: Sequence[SequenceColumn]) -> list[str]:
  """Tables with a vocabulary in saved order: categorical fields, then own-table histories.

  A history with ``share_embedding`` reads its target field's vocabulary and has none.
  """
  return [*categorical, *(c.name for c in columns if not c.share_embedding)]


def save_vocabularies(
  path: str,
  categorical: Sequence[str],
  columns: Sequence[SequenceColumn],
  vocabs: Mapping[str, TokenVocabulary],
) -> None:
  """Writes ``keys_i`` (sorted token strings) and ``ids_i`` per `vocabulary_tables` entry.

  The layout of the classic builders' ``jaxctr_vocab.npz`` (entry i = categorical field i),
  with string keys; no pickled objects (fixed-width unicode arrays).
  """
  arrays = {}
  for i, name in enumerate(vocabulary_tables(categorical, columns)):
    v = vocabs[name]
    arrays[f"keys_{i}"], arrays[f"ids_{i}"] = np.asarray(v.keys).astype(str), v.ids
  np.savez(path, **arrays)


def load_vocabularies(
  path: str, categorical: Sequence[str], columns: Sequence[SequenceColumn]
) -> dict[str, TokenVocabulary]:
  """{table: vocabulary} written by `save_vocabularies`."""
  names = vocabulary_tables(categorical, columns)
  with np.load(path, allow_pickle=False) as z:
    missing = [f"keys_{i}" for i in range(len(names)) if f"keys_{i}" not in z]
    if missing:
      raise DataError(
        f"{path}: lacks {missing[0]} (the vocabulary of {names[int(missing[0][5:])]})"
      )
    return {
      n: TokenVocabulary.from_arrays(z[f"keys_{i}"], z[f"ids_{i}"]) for i, n in enumerate(names)
    }


def columns_to_json(columns: Sequence[SequenceColumn]) -> list[dict]:
  return [dataclasses.asdict(c) for c in columns]


def columns_from_json(d: Sequence[Mapping]) -> tuple[SequenceColumn, ...]:
  return tuple(SequenceColumn(**c) for c in d)


def features(
  categorical: Sequence[str], columns: Sequence[SequenceColumn], vocab_sizes: dict[str, int]
) -> tuple[FeatureSpec, ...]:
  """FeatureSpecs: categorical fields (columns of ``cat``), then the sequence columns.

  ``vocab_sizes`` maps a *table* name (a categorical field, or a sequence without a shared
  embedding) to its rows.
  """
  out = [FeatureSpec(n, CATEGORICAL, vocab_size=vocab_sizes[n]) for n in categorical]
  for c in columns:
    table = c.share_embedding or c.name
    if c.share_embedding and c.share_embedding not in categorical:
      raise DataError(
        f"sequence column {c.name!r}: share_embedding={c.share_embedding!r} is not one of "
        f"the categorical fields {tuple(categorical)}"
      )
    out.append(
      FeatureSpec(
        c.name,
        SEQUENCE,
        vocab_size=vocab_sizes[table],
        max_len=c.max_len,
        pooling=c.pooling,
        table=c.share_embedding or None,
      )
    )
  return tuple(out)
