"""Neural FM (He & Chua, SIGIR 2017): bi-interaction pooling feeding a DNN, plus a linear term.

  f_BI = 0.5 * ((sum_i v_i)^2 - sum_i v_i^2)      (element-wise, [B, D])
  logit = w0 + sum_i w_i + <w_n, dense> + MLP([dropout(f_BI), dense])

Numeric features enter the linear part and, raw, the DNN next to the pooled vector.

Config: ``hidden`` (default (64,): the paper's best was a single hidden layer),
``bi_dropout`` (dropout on the pooled vector, default 0), ``activation``, ``dropout``,
``batch_norm``.
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


def bi_interaction(v):
  """Bi-interaction pooling [B, F, D] -> [B, D] (the FM term before its sum over D)."""
  s = v.sum(axis=1)
  return 0.5 * (s * s - (v * v).sum(axis=1))


@base.register("nfm")
class NFM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "bi_dropout": 0.0,
    "hidden": (64,),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    del num_fields
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    rate = float(cfg.bi_dropout)
    self.bi_dropout = nnx.Dropout(rate) if rate > 0 else None
    self.dnn = layers.mlp_from_config(cfg, embed_dim + num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    pooled = bi_interaction(inputs.fields)
    if self.bi_dropout is not None:
      pooled = self.bi_dropout(pooled, deterministic=not train, rngs=rngs)
    deep = self.dnn(jnp.concatenate([pooled, inputs.dense], -1), train=train, rngs=rngs)[:, 0]
    return self.linear(inputs) + deep
