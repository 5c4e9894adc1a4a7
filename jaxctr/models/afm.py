"""Attentional FM (Xiao et al., IJCAI 2017): FM whose pair products are attention-pooled.

  a_ij = softmax_ij(h^T ReLU(W (v_i * v_j) + b))
  logit = w0 + sum_i w_i + <w_n, dense> + p^T sum_{i<j} a_ij (v_i * v_j)

Numeric features enter the linear part (the paper has none).

Config: ``attention_dim`` (default 16), ``dropout`` (on the pooled vector, as in the paper,
default 0).
"""

import jax
from flax import nnx

from jaxctr.models import base, layers


@base.register("afm")
class AFM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {"attention_dim": 16, "dropout": 0.0}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    del num_fields
    att = int(cfg.attention_dim)
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    self.attention = nnx.Linear(embed_dim, att, rngs=rngs)
    self.attention_h = nnx.Linear(att, 1, use_bias=False, rngs=rngs)
    self.projection = nnx.Linear(embed_dim, 1, use_bias=False, rngs=rngs)
    rate = float(cfg.dropout)
    self.dropout = nnx.Dropout(rate) if rate > 0 else None

  def __call__(self, inputs, *, train=False, rngs=None):
    v = inputs.fields
    left, right = layers.pair_fields(v)
    products = left * right  # [B, P, D]
    scores = self.attention_h(jax.nn.relu(self.attention(products)))[..., 0]
    weights = jax.nn.softmax(scores, axis=1)
    pooled = (weights[..., None] * products).sum(axis=1)
    if self.dropout is not None:
      pooled = self.dropout(pooled, deterministic=not train, rngs=rngs)
    return self.linear(inputs) + self.projection(pooled)[:, 0]
