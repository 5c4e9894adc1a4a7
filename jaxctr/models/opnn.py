"""Outer-product neural network, OPNN (Qu et al., ICDM 2016).

Two ways of turning outer products into features for the first hidden layer:

* ``product_type="sum"`` (the paper's OPNN): superposition, ``p = f_S f_S^T`` with
  ``f_S = sum_i v_i``, a D x D matrix (cost O(D^2) instead of O(F^2 D^2)), flattened.
* ``product_type="mat" | "vec" | "num"`` (the kernel product of the PNN journal version,
  TOIS 2018): one scalar per pair ``p_ij = v_i^T K_ij v_j`` with ``K_ij`` a full D x D
  matrix, a diagonal (vector) or a scalar per pair.

The first hidden layer sees ``[z, p, dense]`` (z: all field embeddings; numeric features raw).

Config: ``product_type`` (default "sum"), ``hidden`` (default 400-400-400), ``activation``,
``dropout``, ``batch_norm``.
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers

_PRODUCT_TYPES = ("sum", "mat", "vec", "num")


@base.register("opnn")
class OPNN(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "product_type": "sum",
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.product_type = cfg.product_type
    pairs, d = layers.num_pairs(num_fields), embed_dim
    if self.product_type == "sum":
      self.kernel, p_width = None, d * d
    elif self.product_type == "mat":
      # Identity plus noise: at init p_ij is close to the inner product, a sensible start.
      eye = jnp.broadcast_to(jnp.eye(d), (pairs, d, d))
      noise = layers.normal_param(rngs, (pairs, d, d), 1.0 / d)[...]
      self.kernel, p_width = nnx.Param(eye + noise), pairs
    elif self.product_type == "vec":
      self.kernel, p_width = nnx.Param(jnp.ones((pairs, d))), pairs
    elif self.product_type == "num":
      self.kernel, p_width = nnx.Param(jnp.ones((pairs,))), pairs
    else:
      raise ValueError(f"opnn: product_type {self.product_type!r} not in {_PRODUCT_TYPES}")
    width = num_fields * embed_dim + p_width + num_dense
    self.dnn = layers.mlp_from_config(cfg, width, rngs=rngs)

  def products(self, v):
    """The product features p: [B, D*D] ("sum") or [B, P] (kernel types)."""
    if self.product_type == "sum":
      s = v.sum(axis=1)
      return (s[:, :, None] * s[:, None, :]).reshape(v.shape[0], -1)
    vi, vj = layers.pair_fields(v)
    k = self.kernel[...]
    if self.product_type == "mat":
      return jnp.einsum("bpd,pde,bpe->bp", vi, k, vj)
    if self.product_type == "vec":
      return jnp.einsum("bpd,pd,bpd->bp", vi, k, vj)
    return jnp.einsum("bpd,bpd->bp", vi, vj) * k

  def __call__(self, inputs, *, train=False, rngs=None):
    b = inputs.fields.shape[0]
    x = jnp.concatenate(
      [inputs.fields.reshape(b, -1), self.products(inputs.fields), inputs.dense], axis=-1
    )
    return self.dnn(x, train=train, rngs=rngs)[:, 0]
