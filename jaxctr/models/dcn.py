"""Deep & Cross Network (Wang et al., ADKDD 2017).

A cross network ``x_{l+1} = x0 * (x_l . w_l) + b_l + x_l`` (each layer adds one degree of
explicit feature crossing with O(K) parameters) runs in parallel with a DNN over the same
input ``x0 = [field embeddings, raw numeric features]``; their outputs are concatenated and
mapped to the logit.

Config: ``cross_layers`` (default 3), ``hidden`` (default 400-400-400; empty: cross network
only), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


class CrossNet(nnx.Module):
  """The DCN cross network (vector weights): [B, K] -> [B, K]."""

  def __init__(self, width: int, num_layers: int, *, rngs: nnx.Rngs):
    self.w = nnx.List([layers.normal_param(rngs, (width,), width**-0.5) for _ in range(num_layers)])
    self.b = nnx.List([nnx.Param(jnp.zeros((width,))) for _ in range(num_layers)])

  def __call__(self, x0):
    x = x0
    for w, b in zip(self.w, self.b, strict=True):
      x = x0 * (x @ w[...])[:, None] + b[...] + x
    return x


@base.register("dcn")
class DCN(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "cross_layers": 3,
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    width = num_fields * embed_dim + num_dense
    self.cross = CrossNet(width, int(cfg.cross_layers), rngs=rngs)
    hidden = tuple(cfg.hidden)
    self.dnn = layers.mlp_from_config(cfg, width, out_features=None, rngs=rngs) if hidden else None
    out_width = width + (self.dnn.out_features if self.dnn is not None else 0)
    self.out = nnx.Linear(out_width, 1, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    x0 = layers.flatten_fields(inputs)
    parts = [self.cross(x0)]
    if self.dnn is not None:
      parts.append(self.dnn(x0, train=train, rngs=rngs))
    return self.out(jnp.concatenate(parts, axis=-1))[:, 0]
