"""The fixed 64-bit hash of vocabulary-free (`hash`) categorical features; numpy only.

A feature declared `hash` at preparation time (`PreprocessConfig.hash_features`) gets no
vocabulary: each raw token becomes an id by this function, so an id never seen in training
still gets its own id (no OOV collapse). Serving imports this module alone (it needs nothing
but numpy) and calls the same function on the same tokens.

The hash, pinned by known-value tests and identical on every machine and numpy version:

1. A token becomes a 64-bit key: an integer keeps its two's-complement bits (the parsers'
   raw keys: Criteo's 32-bit value of its hex token, Avazu's cell hash, libFM's index; a
   blank cell is -1); a `str` is UTF-8 encoded and a `bytes` token hashed with 64-bit
   FNV-1a (offset 0xCBF29CE484222325, prime 0x100000001B3).
2. The feature's salt is FNV-1a 64 of its name (UTF-8), so features hash independently.
3. `h = splitmix64(key XOR splitmix64(salt))` (the splitmix64 finaliser: add
   0x9E3779B97F4A7C15, then xor-shift-multiply by 0xBF58476D1CE4E5B9 and 0x94D049BB133111EB
   with shifts 30, 27, 31).
4. The id is `(h >> 2) | 2**62`: int64 in [2**62, 2**63), so it is non-negative (-1 stays
   the padding id) and disjoint from the hot ids 1..k that preparation gives the k most
   frequent tokens (see `preprocess.PreprocessConfig.hash_features`).

Downstream, hashing and double hashing rehash the int64 id, QR takes its quotient modulo the
quotient table, and DHE's uint32 hashes see its low 32 bits (hash bits, so distinct tokens
still collide with probability ~2**-32).
"""

from __future__ import annotations

import numpy as np

ID_BASE = 1 << 62  # hashed ids lie in [ID_BASE, 2 * ID_BASE)
_U64 = np.uint64
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
  """64-bit FNV-1a of a byte string."""
  h = _FNV_OFFSET
  for b in data:
    h = ((h ^ b) * _FNV_PRIME) & _MASK64
  return h


def splitmix64(x) -> np.ndarray:
  """The splitmix64 finaliser, a bijection on uint64 (vectorised)."""
  x = np.asarray(x).astype(np.uint64)
  with np.errstate(over="ignore"):
    z = x + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def token_keys(tokens) -> np.ndarray:
  """Raw tokens (integers, or `str`/`bytes`) -> uint64 keys (step 1 above)."""
  arr = np.asarray(tokens)
  if arr.dtype.kind in "USO":
    flat = [t.encode() if isinstance(t, str) else bytes(t) for t in arr.ravel().tolist()]
    return np.array([fnv1a64(t) for t in flat], np.uint64).reshape(arr.shape)
  if arr.dtype.kind == "i":
    return arr.astype(np.int64).view(np.uint64)
  if arr.dtype.kind in "ub":
    return arr.astype(np.uint64)
  raise TypeError(f"cannot hash tokens of dtype {arr.dtype}")


def feature_salt(name: str) -> np.uint64:
  """Step 2: the salt of a feature, from its name."""
  return _U64(fnv1a64(name.encode()))


def hash_ids(tokens, feature: str) -> np.ndarray:
  """Raw tokens of feature `feature` -> int64 ids in [2**62, 2**63) (steps 1-4)."""
  h = splitmix64(token_keys(tokens) ^ splitmix64(feature_salt(feature)))
  return ((h >> _U64(2)) | _U64(ID_BASE)).view(np.int64)
