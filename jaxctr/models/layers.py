"""Building blocks shared by the model zoo."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

_ACTIVATIONS = {
  "relu": jax.nn.relu,
  "gelu": jax.nn.gelu,
  "sigmoid": jax.nn.sigmoid,
  "tanh": jnp.tanh,
  "silu": jax.nn.silu,
  "linear": lambda x: x,
}


def activation(name: str):
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


class MLP(nnx.Module):
  """Dense layers with activation, optional batch norm and dropout.

  Args:
    in_features: Input width.
    hidden: Widths of the hidden layers.
    out_features: If set, a final linear layer without activation.
    activation: Hidden activation name.
    dropout: Dropout rate after each hidden layer (train only).
    batch_norm: Batch norm before each activation.
  """

  def __init__(
    self,
    in_features: int,
    hidden: Sequence[int],
    *,
    out_features: int | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    rngs: nnx.Rngs,
  ):
    self.act = globals()["activation"](activation)
    dims = [in_features, *hidden]
    self.layers = nnx.List(
      [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
    )
    self.norms = nnx.List([nnx.BatchNorm(b, rngs=rngs) for b in hidden] if batch_norm else [])
    self.dropout = nnx.Dropout(dropout) if dropout > 0 else None
    self.out = nnx.Linear(dims[-1], out_features, rngs=rngs) if out_features else None
    self.out_features = out_features or dims[-1]

  def __call__(self, x: Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> Array:
    return self.tail(x, train=train, rngs=rngs)

  def tail(
    self, x: Array, *, start: int = 0, train: bool = False, rngs: nnx.Rngs | None = None
  ) -> Array:
    """The MLP on input ``x`` (``start=0``) or, with ``start=1``, on the first linear layer's
    output ``x`` (norm, activation and the rest follow): the partials exchange computes that
    output as a sum over the table owners."""
    if start not in (0, 1) or (start and not self.layers):
      raise ValueError(f"MLP.tail: start={start} needs 0, or 1 with a hidden layer")
    for i, layer in enumerate(self.layers):
      if i >= start:
        x = layer(x)
      if self.norms:
        x = self.norms[i](x, use_running_average=not train)
      x = self.act(x)
      if self.dropout is not None:
        x = self.dropout(x, deterministic=not train, rngs=rngs)
    if self.out is not None:
      x = self.out(x)
    return x


def fm_interaction(v: Array) -> Array:
  """Second-order FM term, O(F*D): 0.5 * sum_d ((sum_f v)^2 - sum_f v^2). [B,F,D] -> [B]."""
  s = v.sum(axis=1)
  return 0.5 * jnp.sum(s * s - jnp.sum(v * v, axis=1), axis=-1)


def pairwise_products(v: Array) -> Array:
  """Inner products of every field pair i<j: [B, F, D] -> [B, F*(F-1)/2].

  The upper triangle of the Gram matrix ``v v^T`` (one batched matmul, then a gather of
  [B, F*F] scalars): far cheaper, forward and backward, than multiplying the [B, P, D]
  operands of `pair_fields`, which materialises every pair's vectors.
  """
  b, f = v.shape[:2]
  i, j = pair_indices(f)
  gram = jnp.einsum("bfd,bgd->bfg", v, v).reshape(b, f * f)
  return gram[:, i * f + j]


def pair_fields(v: Array) -> tuple[Array, Array]:
  """``(v[:, i], v[:, j])`` for every pair i<j in `pair_indices` order: two [B, P, ...] arrays.

  Built from static slices rather than by indexing with the pair indices: indexing lowers
  to a gather whose gradient is a scatter-add, several times slower on CPU.
  """
  b, f = v.shape[:2]
  if f < 2:
    empty = jnp.zeros((b, 0, *v.shape[2:]), v.dtype)
    return empty, empty
  rest = v.shape[2:]
  left = jnp.concatenate(
    [jnp.broadcast_to(v[:, i : i + 1], (b, f - 1 - i, *rest)) for i in range(f - 1)], axis=1
  )
  right = jnp.concatenate([v[:, i + 1 :] for i in range(f - 1)], axis=1)
  return left, right


def flatten_fields(inputs) -> Array:
  """Concatenation of all field embeddings and the dense features: [B, F*D + N]."""
  b = inputs.fields.shape[0]
  return jnp.concatenate([inputs.fields.reshape(b, -1), inputs.dense], axis=-1)


class LinearTerm(nnx.Module):
  """First-order term: sum of per-field weights + a linear map of the dense features."""

  def __init__(self, num_dense: int, *, rngs: nnx.Rngs):
    # Zero init, as logistic regression starts: a random projection of the numeric
    # features would dominate the logit until the optimizer undoes it.
    init = nnx.initializers.zeros_init()
    self.dense = nnx.Linear(num_dense, 1, kernel_init=init, rngs=rngs) if num_dense else None
    self.bias = nnx.Param(jnp.zeros(()))

  def __call__(self, inputs) -> Array:
    out = self.bias[...] + jnp.zeros(inputs.fields.shape[0])
    if inputs.linear is not None:
      out = out + inputs.linear.sum(axis=1)
    if self.dense is not None:
      out = out + self.dense(inputs.dense)[:, 0]
    return out


def pair_indices(num_fields: int) -> tuple[np.ndarray, np.ndarray]:
  """Row/column indices of the field pairs i<j, in `pairwise_products` order.

  Numpy (not jnp) on purpose: the indices are static shapes, so they are baked into the
  trace as constants instead of being recomputed on device.
  """
  return np.triu_indices(num_fields, k=1)


def num_pairs(num_fields: int) -> int:
  return num_fields * (num_fields - 1) // 2


def normal_param(rngs: nnx.Rngs, shape: Sequence[int], stddev: float) -> nnx.Param:
  """A parameter drawn from N(0, stddev^2)."""
  return nnx.Param(stddev * jax.random.normal(rngs.params(), tuple(shape)))


def mlp_from_config(cfg, in_features: int, *, out_features=1, rngs):
  """An `MLP` whose hidden/activation/dropout/batch_norm come from a model config.

  Keys: ``hidden``, ``activation``, ``dropout``, ``batch_norm`` (the DeepFM conventions), so
  every model with a DNN tower reads the same names; the model declares their defaults in
  its ``HPARAMS``.
  """
  return MLP(
    in_features,
    tuple(cfg.hidden),
    out_features=out_features,
    activation=cfg.activation,
    dropout=cfg.dropout,
    batch_norm=cfg.batch_norm,
    rngs=rngs,
  )


class NumericEmbedding(nnx.Module):
  """Embeds each numeric feature as ``x_m * v_m`` (AutoInt's treatment of numeric fields).

  Maps dense [B, N] to [B, N, D]; with N = 0 it returns an empty [B, 0, D] array.
  """

  def __init__(self, num_dense: int, embed_dim: int, *, rngs: nnx.Rngs, stddev: float = 0.01):
    self.num_dense, self.embed_dim = num_dense, embed_dim
    self.table = normal_param(rngs, (num_dense, embed_dim), stddev) if num_dense else None

  def __call__(self, dense: Array) -> Array:
    if self.table is None:
      return jnp.zeros((dense.shape[0], 0, self.embed_dim), dense.dtype)
    return dense[:, :, None] * self.table[...][None]


def fields_with_numeric(inputs, numeric: NumericEmbedding) -> Array:
  """Field embeddings with the numeric-feature embeddings appended: [B, F + N, D]."""
  return jnp.concatenate([inputs.fields, numeric(inputs.dense).astype(inputs.fields.dtype)], axis=1)
