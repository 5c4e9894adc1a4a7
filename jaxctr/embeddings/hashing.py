"""Stable, seeded hash functions for ids and raw keys (host side, numpy).

Everything here is pure integer arithmetic on fixed-width unsigned integers
(splitmix64 finalisers, and FNV-1a for bytes), so a key lands in the same
bucket on every run, machine and numpy version; Python's `hash` is salted per
process and cannot be used. Tests pin expected values.

The id transforms used by the embedding methods live here too:

* `hash_buckets`: the hashing trick, any id -> one of ``num_buckets`` rows.
* `double_hash`: frequency-based double hashing (Zhang et al., RecSys 2020);
  prepared vocabularies number ids by descending training count, so the hot
  ids are 1..k (and the OOV id 0 keeps its own row too).
* `quotient_remainder`: compositional (QR) embeddings (Shi et al., 2020).
"""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def splitmix64(x) -> np.ndarray:
  """The splitmix64 finaliser: a bijective, well-mixing uint64 -> uint64 map."""
  x = np.asarray(x).astype(np.uint64)
  with np.errstate(over="ignore"):
    z = x + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return z ^ (z >> _U64(31))


def _seed_key(seed: int, salt: int = 0) -> np.uint64:
  return splitmix64(np.uint64((seed & _MASK64) ^ ((salt * 0x632BE59BD9B4E019) & _MASK64)))


def fnv1a64(data: bytes) -> int:
  """64-bit FNV-1a of a byte string (a stable hash of a raw string key)."""
  h = _FNV_OFFSET
  for b in data:
    h = ((h ^ b) * _FNV_PRIME) & _MASK64
  return h


def hash_keys(keys, seed: int = 0, salt: int = 0) -> np.ndarray:
  """Stable uint64 hashes of int ids (any integer dtype) or raw str/bytes keys.

  Args:
    keys: An integer array (int32/int64/uint64 ids, negative values included),
      or an iterable of `str`/`bytes` raw keys (strings are UTF-8 encoded).
    seed: Hash seed; different seeds give independent hash functions.
    salt: A second seed component (e.g. which of several hash functions).

  Returns:
    uint64 array of the keys' shape.
  """
  arr = np.asarray(keys)
  if arr.dtype.kind in "USO":
    flat = [k.encode() if isinstance(k, str) else bytes(k) for k in arr.ravel().tolist()]
    arr = np.array([fnv1a64(k) for k in flat], np.uint64).reshape(arr.shape)
  elif arr.dtype.kind not in "iub":
    raise TypeError(f"hash_keys: cannot hash keys of dtype {arr.dtype}")
  # Reinterpret signed ids as their two's-complement bits (-1 -> 2^64 - 1).
  bits = arr.astype(np.int64).view(np.uint64) if arr.dtype.kind == "i" else arr.astype(np.uint64)
  return splitmix64(bits ^ _seed_key(seed, salt))


def hash_buckets(keys, num_buckets: int, seed: int = 0, salt: int = 0) -> np.ndarray:
  """The hashing trick: keys -> int64 buckets in [0, num_buckets)."""
  if num_buckets < 1:
    raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
  return (hash_keys(keys, seed, salt) % _U64(num_buckets)).astype(np.int64)


def double_hash(
  ids: np.ndarray, hot_ids: int, num_buckets: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Frequency-based double hashing of encoded ids (0 = OOV, 1 = most frequent).

  The OOV id 0 keeps its own row like the hot ids: it stands for every id the
  vocabulary dropped or never saw, so hashing it would give all unseen ids at
  serving time the vectors of two unrelated rare ids (0.0004-0.0007 AUC lost on
  the long-tail benchmark).

  Returns:
    ``(hot, h1, h2)``: ``hot`` is the id itself for ids 0..hot_ids (rows of a
    ``hot_ids + 1``-row table) and -1 otherwise; ``h1``/``h2`` are two
    independent buckets for the other ids and -1 for hot ones. Negative inputs
    (padding) give -1 everywhere.
  """
  ids = np.asarray(ids, np.int64)
  valid = ids >= 0
  is_hot = valid & (ids <= hot_ids)
  cold = valid & ~is_hot
  hot = np.where(is_hot, ids, -1)
  h1 = np.where(cold, hash_buckets(ids, num_buckets, seed, salt=1), -1)
  h2 = np.where(cold, hash_buckets(ids, num_buckets, seed, salt=2), -1)
  return hot, h1, h2


def quotient_remainder(
  ids: np.ndarray, num_remainder: int, num_quotient: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Ids -> (id // m, id % m); the pair is unique per id. Negative ids give (-1, -1).

  With `num_quotient`, the quotient is taken modulo it: ids beyond the table (vocabulary-free
  hashed ids, up to 2**63) share quotient rows; ids below `num_quotient * m` are unchanged.
  """
  ids = np.asarray(ids, np.int64)
  valid = ids >= 0
  q = ids // num_remainder
  if num_quotient is not None:
    q %= num_quotient
  q = np.where(valid, q, -1)
  r = np.where(valid, ids % num_remainder, -1)
  return q, r


def quotient_rows(vocab_size: int, num_remainder: int) -> int:
  """Rows of the quotient table for ids in [0, vocab_size)."""
  return max(1, -(-vocab_size // num_remainder))
