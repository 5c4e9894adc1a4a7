"""Sequence (behaviour-history) columns: declaration, padding/truncation and vocabularies.

A sequence column holds a variable number of ids per row (e.g. the items a user clicked
before, oldest first), stored as a fixed-width int32 matrix ``[n, max_len]`` with -1 at
padded positions; the embedding layer turns -1 into a zero row and a 0 in the mask
(`jaxctr.embeddings.collection`). ``share_embedding`` makes a history column read the rows
of its target field's table (item_history with item_id), so both share one vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

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


class TokenVocabulary:
  """String tokens -> ids 1..n by descending training count (0: OOV and rare tokens)."""

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
