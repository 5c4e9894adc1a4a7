"""AutoInt (Song et al., CIKM 2019): stacked multi-head self-attention over the fields.

Numeric features are embedded as fields, ``e_m = x_m v_m`` (the paper's treatment), so the
attention runs over F + N vectors. Each interacting layer::

  head_h = softmax(Q_h K_h^T / sqrt(d)) V_h           (Q_h = X W_Q^h, ...; d = attention_dim)
  X'     = ReLU(concat_h head_h + X W_res)              (residual projection)

The last layer's output is flattened into a linear logit. AutoInt+ adds a DNN over the raw
inputs (``hidden`` non-empty) whose logit is summed in.

Config: ``attention_layers`` (default 3), ``num_heads`` (default 2), ``attention_dim`` (per
head, default 32), ``use_residual`` (default True), ``scale`` (1/sqrt(d) scaling, default
True: the paper has none, but scaling keeps deep stacks stable), ``layer_norm`` (default
False), ``hidden`` (default (): plain AutoInt), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


class InteractingLayer(nnx.Module):
  """One multi-head self-attention layer over fields: [B, M, Din] -> [B, M, H*d]."""

  def __init__(self, in_dim, heads, head_dim, *, residual, scale, layer_norm, rngs: nnx.Rngs):
    out = heads * head_dim
    self.heads, self.head_dim, self.scale = heads, head_dim, scale
    self.q = nnx.Linear(in_dim, out, use_bias=False, rngs=rngs)
    self.k = nnx.Linear(in_dim, out, use_bias=False, rngs=rngs)
    self.v = nnx.Linear(in_dim, out, use_bias=False, rngs=rngs)
    self.res = nnx.Linear(in_dim, out, use_bias=False, rngs=rngs) if residual else None
    self.norm = nnx.LayerNorm(out, rngs=rngs) if layer_norm else None

  def __call__(self, x):
    b, m, _ = x.shape
    split = lambda t: t.reshape(b, m, self.heads, self.head_dim)
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k)
    if self.scale:
      scores = scores / jnp.sqrt(float(self.head_dim))
    att = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v).reshape(b, m, -1)
    if self.res is not None:
      att = att + self.res(x)
    att = jax.nn.relu(att)
    return self.norm(att) if self.norm is not None else att


@base.register("autoint")
class AutoInt(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "num_heads": 2,
    "attention_dim": 32,
    "attention_layers": 3,
    "use_residual": True,
    "scale": True,
    "layer_norm": False,
    "hidden": (),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    heads, head_dim = int(cfg.num_heads), int(cfg.attention_dim)
    self.numeric = layers.NumericEmbedding(num_dense, embed_dim, rngs=rngs)
    dims = [embed_dim] + [heads * head_dim] * int(cfg.attention_layers)
    self.attention = nnx.List(
      [
        InteractingLayer(
          a,
          heads,
          head_dim,
          residual=cfg.use_residual,
          scale=cfg.scale,
          layer_norm=cfg.layer_norm,
          rngs=rngs,
        )
        for a in dims[:-1]
      ]
    )
    self.out = nnx.Linear((num_fields + num_dense) * dims[-1], 1, rngs=rngs)
    hidden = tuple(cfg.hidden)
    # Declared as data up front: a module assigned later to an attribute first set to None
    # would otherwise be rejected as a change of a static attribute.
    self.dnn = nnx.data(None)
    if hidden:
      self.dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    x = layers.fields_with_numeric(inputs, self.numeric)
    for layer in self.attention:
      x = layer(x)
    out = self.out(x.reshape(x.shape[0], -1))[:, 0]
    if self.dnn is not None:
      out = out + self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
    return out
