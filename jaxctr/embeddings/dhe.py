"""Deep Hash Embedding (Kang et al., KDD 2021): ids -> k hashes -> MLP -> vector.

There is no table: every id (seen in training or not) has a unique dense
identifier vector made of k independent hashes, decoded by an MLP into its
embedding, so memory is the MLP's and there are no collisions in practice.
Everything runs inside jit on uint32 arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxctr.embeddings import hashing
from jaxctr.embeddings.specs import EncoderSpec

_TWO_PI = 2.0 * np.pi


def _fmix32(h: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finaliser (bijective avalanche mix)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def hash_seeds(k: int, seed: int, salt: int) -> np.ndarray:
  """k fixed uint32 seeds, one per hash function (stable across machines)."""
  return (hashing.hash_keys(np.arange(k), seed, salt) >> np.uint64(32)).astype(np.uint32)


def encode(ids: jax.Array, seeds: jax.Array, dist: str) -> jax.Array:
  """Dense identifier vectors: int ids [...] -> [..., k] float32.

  ``uniform`` values are ~U(-1, 1); ``gaussian`` ones ~N(0, 1), made from pairs
  of uniform hashes with the Box-Muller transform.
  """
  x = ids.astype(jnp.uint32)[..., None]
  h = _fmix32(_fmix32(x * jnp.uint32(0x9E3779B1) ^ seeds) + seeds)
  # 24 high bits -> a uniform in (0, 1), never exactly 0 (log below).
  u = ((h >> 8).astype(jnp.float32) + 0.5) * (1.0 / (1 << 24))
  if dist == "uniform":
    return 2.0 * u - 1.0
  u1, u2 = u[..., 0::2], u[..., 1::2]
  r = jnp.sqrt(-2.0 * jnp.log(u1))
  z = jnp.stack([r * jnp.cos(_TWO_PI * u2), r * jnp.sin(_TWO_PI * u2)], axis=-1)
  return z.reshape(u.shape)


def _mish(x):
  return x * jnp.tanh(jax.nn.softplus(x))


class DHE(nnx.Module):
  """DHE for a group of features with the same spec; one MLP per feature (batched).

  Args:
    spec: The features' `EncoderSpec` (dhe_k, dhe_dist, dhe_hidden, seed).
    num_features: Number of features in the group.
    salts: A distinct hash salt per feature, so features get independent hashes.
    out_dim: Width of an embedding (the table row width).
    rngs: Initialisation randomness.
  """

  def __init__(
    self, spec: EncoderSpec, num_features: int, salts: Sequence[int], out_dim: int, *, rngs
  ):
    self.dist = spec.dhe_dist
    seeds = np.stack([hash_seeds(spec.dhe_k, spec.seed, s) for s in salts])
    self.seeds = nnx.Variable(jnp.asarray(seeds))  # constant; saved so serving hashes alike
    widths = (spec.dhe_k, *spec.dhe_hidden, out_dim)
    ws, bs = [], []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
      # He init on hidden layers; a small last layer keeps initial embeddings small,
      # like the tables' small init_std (large ones make FM products blow up).
      std = np.sqrt(2.0 / a) if i < len(widths) - 2 else 0.01 / np.sqrt(a)
      ws.append(nnx.Param(std * jax.random.normal(rngs.params(), (num_features, a, b))))
      bs.append(nnx.Param(jnp.zeros((num_features, b))))
    self.weights = nnx.List(ws)
    self.biases = nnx.List(bs)

  def __call__(self, ids: jax.Array) -> jax.Array:
    """ids [B, F] -> embeddings [B, F, out_dim]."""
    seeds = self.seeds[...]  # [F, k]
    z = encode(ids, seeds[None], self.dist)  # [B, F, k]
    n = len(self.weights)
    for i in range(n):
      z = jnp.einsum("nfa,fac->nfc", z, self.weights[i][...]) + self.biases[i][...][None]
      if i < n - 1:
        z = _mish(z)
    return z
