"""Attention units and helpers shared by the behaviour models (DIN, SIM, UBR4CTR, CAN).

Behaviour models pair target fields with history sequences that share their tables
(``item_id`` with ``item_history``, ``cate_id`` with ``cate_history``). A behaviour's key
is the concatenation of its sequences' embeddings at that position, the query the
concatenation of the target fields' embeddings, both ``P * D`` wide.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.models import layers

Array = jax.Array

# (target field, history sequence) pairs of every behaviour dataset of jaxctr.data.
DEFAULT_PAIRS = (("item_id", "item_history"), ("cate_id", "cate_history"))


def target_and_history(inputs, pairs: Sequence[Sequence[str]], dim: int | None = None):
  """Query [B, P*D], keys [B, L, P*D] and mask [B, L] of the (target, history) pairs.

  ``dim`` keeps the first ``dim`` columns of each embedding (models whose rows carry
  extra columns, e.g. CAN's co-action parameters).
  """
  names = list(inputs.field_names)
  qs, ks = [], []
  for target, hist in pairs:
    if target not in names:
      raise ValueError(
        f"behaviour model: target field {target!r} is not among the fields {tuple(names)}"
      )
    if hist not in inputs.sequences:
      raise ValueError(
        f"behaviour model: no unpooled sequence {hist!r}; have {sorted(inputs.sequences)}"
      )
    qs.append(inputs.fields[:, names.index(target), :dim])
    ks.append(inputs.sequences[hist][..., :dim])
  mask = inputs.sequences[pairs[0][1] + "/mask"]
  return jnp.concatenate(qs, axis=-1), jnp.concatenate(ks, axis=-1), mask


class Dice(nnx.Module):
  """Dice (DIN): ``p(x) * x + (1 - p(x)) * alpha * x``, ``p = sigmoid(batch-normalised x)``."""

  def __init__(self, features: int, *, rngs: nnx.Rngs, eps: float = 1e-8):
    self.norm = nnx.BatchNorm(features, use_bias=False, use_scale=False, epsilon=eps, rngs=rngs)
    self.alpha = nnx.Param(jnp.zeros((features,)))

  def __call__(self, x: Array, *, train: bool = False) -> Array:
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    p = jax.nn.sigmoid(self.norm(flat, use_running_average=not train)).reshape(shape)
    return p * x + (1.0 - p) * self.alpha[...] * x


class PReLU(nnx.Module):
  """``max(0, x) + alpha * min(0, x)`` with a learned slope per unit."""

  def __init__(self, features: int, *, rngs: nnx.Rngs, init: float = 0.25):
    del rngs
    self.alpha = nnx.Param(jnp.full((features,), init))

  def __call__(self, x: Array, *, train: bool = False) -> Array:
    del train
    return jnp.where(x >= 0, x, self.alpha[...] * x)


class _Act(nnx.Module):
  """A named activation that may have parameters (dice, prelu) or not (relu, sigmoid...)."""

  def __init__(self, name: str, features: int, *, rngs: nnx.Rngs):
    cls = {"dice": Dice, "prelu": PReLU}.get(name)
    self.module = cls(features, rngs=rngs) if cls is not None else None
    self.fn = None if cls is not None else layers.activation(name)

  def __call__(self, x, *, train=False):
    return self.module(x, train=train) if self.module is not None else self.fn(x)


class DINAttention(nnx.Module):
  """DIN's local activation unit: a score MLP over ``[q, k, q - k, q * k]`` per behaviour.

  Output: ``sum_l w_l * k_l`` with ``w = MLP(...)`` times the mask (weights are not
  normalised, as in DIN and FuxiCTR's default) or, with ``softmax=True``, a softmax over
  the real positions. An empty history gives zeros.

  Args:
    dim: Width of q and k.
    hidden: Hidden widths of the score MLP (DIN: 80-40).
    activation: dice, prelu or any `layers.activation` name.
  """

  def __init__(
    self,
    dim: int,
    hidden: Sequence[int] = (80, 40),
    *,
    activation: str = "dice",
    softmax: bool = False,
    rngs: nnx.Rngs,
  ):
    widths = [4 * dim, *hidden]
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
    self.acts = nnx.List([_Act(activation, b, rngs=rngs) for b in hidden])
    self.out = nnx.Linear(widths[-1], 1, rngs=rngs)
    self.softmax = softmax

  def scores(self, q: Array, k: Array, *, train: bool = False) -> Array:
    """Unmasked scores [B, L] of keys k [B, L, d] for queries q [B, d]."""
    qb = jnp.broadcast_to(q[:, None, :], k.shape)
    h = jnp.concatenate([qb, k, qb - k, qb * k], axis=-1)
    for layer, act in zip(self.layers, self.acts):
      h = act(layer(h), train=train)
    return self.out(h)[..., 0]

  def weights(self, q: Array, k: Array, mask: Array, *, train: bool = False) -> Array:
    s = self.scores(q, k, train=train)
    if self.softmax:
      return masked_softmax(s, mask)
    return s * mask

  def __call__(self, q: Array, k: Array, mask: Array, *, train: bool = False) -> Array:
    w = self.weights(q, k, mask, train=train)
    return jnp.einsum("bl,bld->bd", w, k)


def masked_softmax(scores: Array, mask: Array) -> Array:
  """Softmax over the positions where ``mask`` is 1 (all zeros for an empty row)."""
  real = mask > 0
  s = jnp.where(real, scores, -1e30)
  s = s - jax.lax.stop_gradient(s.max(axis=-1, keepdims=True))
  e = jnp.exp(s) * real
  return e / jnp.maximum(e.sum(axis=-1, keepdims=True), 1e-30)


def masked_sum(x: Array, mask: Array) -> Array:
  """[B, L, d] -> [B, d], summing the real positions."""
  return jnp.einsum("bl,bld->bd", mask.astype(x.dtype), x)


class TargetAttention(nnx.Module):
  """Multi-head target attention (SIM's exact search unit): q attends over keys.

  ``head_i = softmax_l(<Wq_i q, Wk_i k_l> / sqrt(d)) Wv_i k_l`` over the real positions;
  the heads are concatenated: [B, heads * head_dim].
  """

  def __init__(self, q_dim: int, k_dim: int, heads: int, head_dim: int, *, rngs: nnx.Rngs):
    self.heads, self.head_dim = heads, head_dim
    self.wq = nnx.Linear(q_dim, heads * head_dim, use_bias=False, rngs=rngs)
    self.wk = nnx.Linear(k_dim, heads * head_dim, use_bias=False, rngs=rngs)
    self.wv = nnx.Linear(k_dim, heads * head_dim, use_bias=False, rngs=rngs)

  @property
  def out_dim(self) -> int:
    return self.heads * self.head_dim

  def __call__(self, q: Array, k: Array, mask: Array) -> Array:
    b, length = k.shape[:2]
    h, d = self.heads, self.head_dim
    qh = self.wq(q).reshape(b, h, d)
    kh = self.wk(k).reshape(b, length, h, d)
    vh = self.wv(k).reshape(b, length, h, d)
    s = jnp.einsum("bhd,blhd->bhl", qh, kh) / jnp.sqrt(float(d))
    w = masked_softmax(s, mask[:, None, :])
    return jnp.einsum("bhl,blhd->bhd", w, vh).reshape(b, h * d)


def take_positions(x: Array, pos: Array) -> Array:
  """x [B, L, ...] at positions pos [B, K] -> [B, K, ...]."""
  idx = pos.reshape(pos.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def top_k_positions(scores: Array, valid: Array, k: int) -> tuple[Array, Array]:
  """The ``k`` best valid positions by score: (positions [B, k], found mask [B, k])."""
  k = min(k, scores.shape[1])
  s = jnp.where(valid, scores, -jnp.inf)
  top, pos = jax.lax.top_k(s, k)
  return pos, (top > -jnp.inf).astype(jnp.float32)
