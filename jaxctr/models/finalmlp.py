"""FinalMLP (Mao et al., AAAI 2023): two MLP streams with feature gating and bilinear fusion.

* Feature selection: each stream s gates its input ``x = [field embeddings, raw numeric]``
  with ``g_s = 2 * sigmoid(MLP_s(context_s))``. The context is the embeddings of the fields
  listed in ``fs1_context`` / ``fs2_context`` (field indices), or, when empty, a learned
  vector of width D.
* Two MLP streams produce o1 and o2.
* Multi-head bilinear fusion: split o1, o2 into k heads and sum over heads
  ``w1_h^T o1_h + w2_h^T o2_h + o1_h^T W3_h o2_h`` (+ bias).

Config: ``mlp1_hidden`` (default 400-400-400), ``mlp2_hidden`` (default 800),
``fs_hidden`` (gate MLP, default 800), ``fs1_context`` / ``fs2_context`` (default ()),
``num_heads`` (default 1; must divide both stream widths), ``activation``, ``dropout``,
``batch_norm`` (stream MLPs).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


class FeatureGate(nnx.Module):
  """2*sigmoid gate of the stream input from a context: [B, K] -> [B, K]."""

  def __init__(self, context_fields, embed_dim, width, hidden, *, rngs: nnx.Rngs):
    self.context_fields = tuple(int(f) for f in context_fields)
    ctx_width = embed_dim * max(1, len(self.context_fields))
    # Small random (not zero, as in the reference code) init of the context vector: with a
    # zero context the gate's first kernel gets no gradient until the vector has moved.
    self.context = None if self.context_fields else layers.normal_param(rngs, (embed_dim,), 0.01)
    self.mlp = layers.MLP(ctx_width, tuple(hidden), out_features=width, rngs=rngs)

  def __call__(self, inputs, x):
    b = x.shape[0]
    if self.context is None:
      ctx = inputs.fields[:, list(self.context_fields)].reshape(b, -1)
    else:
      # The learned context is the same for every example: run the gate MLP once, broadcast.
      ctx = self.context[...][None]
    return x * 2.0 * jax.nn.sigmoid(self.mlp(ctx))


class BilinearFusion(nnx.Module):
  """Multi-head bilinear fusion of two vectors into one logit: [B,d1], [B,d2] -> [B]."""

  def __init__(self, d1, d2, heads, *, rngs: nnx.Rngs):
    if d1 % heads or d2 % heads:
      raise ValueError(f"finalmlp: num_heads={heads} must divide both stream widths ({d1}, {d2})")
    self.heads = heads
    self.w1 = nnx.Linear(d1, 1, rngs=rngs)
    self.w2 = nnx.Linear(d2, 1, use_bias=False, rngs=rngs)
    h1, h2 = d1 // heads, d2 // heads
    self.w3 = layers.normal_param(rngs, (heads, h1, h2), (h1 * h2) ** -0.5)

  def __call__(self, o1, o2):
    b = o1.shape[0]
    x = o1.reshape(b, self.heads, -1)
    y = o2.reshape(b, self.heads, -1)
    bilinear = jnp.einsum("bhx,hxy,bhy->b", x, self.w3[...], y)
    return self.w1(o1)[:, 0] + self.w2(o2)[:, 0] + bilinear


@base.register("finalmlp")
class FinalMLP(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "fs_hidden": (800,),
    "fs1_context": (),
    "fs2_context": (),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "mlp1_hidden": (400, 400, 400),
    "mlp2_hidden": (800,),
    "num_heads": 1,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    width = num_fields * embed_dim + num_dense
    fs_hidden = tuple(cfg.fs_hidden)
    self.gate1 = FeatureGate(cfg.fs1_context, embed_dim, width, fs_hidden, rngs=rngs)
    self.gate2 = FeatureGate(cfg.fs2_context, embed_dim, width, fs_hidden, rngs=rngs)
    common = dict(
      activation=cfg.activation,
      dropout=cfg.dropout,
      batch_norm=cfg.batch_norm,
      rngs=rngs,
    )
    self.mlp1 = layers.MLP(width, tuple(cfg.mlp1_hidden), **common)
    self.mlp2 = layers.MLP(width, tuple(cfg.mlp2_hidden), **common)
    self.fusion = BilinearFusion(
      self.mlp1.out_features, self.mlp2.out_features, int(cfg.num_heads), rngs=rngs
    )

  def __call__(self, inputs, *, train=False, rngs=None):
    x = layers.flatten_fields(inputs)
    o1 = self.mlp1(self.gate1(inputs, x), train=train, rngs=rngs)
    o2 = self.mlp2(self.gate2(inputs, x), train=train, rngs=rngs)
    return self.fusion(o1, o2)
