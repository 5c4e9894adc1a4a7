"""xDeepFM (Lian et al., KDD 2018): linear term + Compressed Interaction Network + DNN.

CIN layer k builds every Hadamard product of its previous feature maps with the field
embeddings and compresses them (a 1x1 convolution, i.e. a learned weighted sum per output
map)::

  X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j)      (* element-wise over D)

Each layer's maps are sum-pooled over D and concatenated into the CIN output. With
``split_half`` (the paper's released code) half of a hidden layer's maps go to the output
and half feed the next layer. Numeric features enter the linear part and the DNN raw.

Config: ``cin_layers`` (default 200-200-200 as in the paper), ``split_half`` (default True),
``cin_activation`` (default "linear": the paper's CIN has no nonlinearity), ``hidden``
(default 400-400-400; empty: no DNN), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


def cin_layer(xk, x0, weight, bias):
  """One CIN layer before activation: [B,H,D], [B,M,D], [H*M,C], [C] -> [B,C,D]."""
  b, h, d = xk.shape
  z = jnp.einsum("bhd,bmd->bhmd", xk, x0).reshape(b, h * x0.shape[1], d)
  return jnp.einsum("bnd,nc->bcd", z, weight) + bias[None, :, None]


class CIN(nnx.Module):
  """Compressed Interaction Network: [B, M, D] -> [B, sum of output maps]."""

  def __init__(self, num_fields, sizes, *, split_half=True, activation="linear", rngs: nnx.Rngs):
    self.act = layers.activation(activation)
    self.split_half = split_half
    self.weights, self.biases, self.sizes = nnx.List(), nnx.List(), tuple(sizes)
    h, self.out_features = num_fields, 0
    for k, c in enumerate(sizes):
      last = k == len(sizes) - 1
      if split_half and not last and c % 2:
        raise ValueError(f"cin_layers with split_half need even sizes, got {c}")
      n = h * num_fields
      self.weights.append(layers.normal_param(rngs, (n, c), n**-0.5))
      self.biases.append(nnx.Param(jnp.zeros((c,))))
      h = c // 2 if split_half and not last else c
      self.out_features += c // 2 if split_half and not last else c

  def __call__(self, x0):
    xk, pooled = x0, []
    for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
      y = self.act(cin_layer(xk, x0, w[...], b[...]))
      if self.split_half and k < len(self.sizes) - 1:
        half = self.sizes[k] // 2
        xk, out = y[:, :half], y[:, half:]
      else:
        xk, out = y, y
      pooled.append(out.sum(axis=-1))
    return jnp.concatenate(pooled, axis=-1)


@base.register("xdeepfm")
class XDeepFM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "cin_layers": (200, 200, 200),
    "split_half": True,
    "cin_activation": "linear",
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    self.cin = CIN(
      num_fields,
      tuple(cfg.cin_layers),
      split_half=cfg.split_half,
      activation=cfg.cin_activation,
      rngs=rngs,
    )
    self.cin_out = nnx.Linear(self.cin.out_features, 1, rngs=rngs)
    hidden = tuple(cfg.hidden)
    # Declared as data up front: a module assigned later to an attribute first set to None
    # would otherwise be rejected as a change of a static attribute.
    self.dnn = nnx.data(None)
    if hidden:
      self.dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    out = self.linear(inputs) + self.cin_out(self.cin(inputs.fields))[:, 0]
    if self.dnn is not None:
      out = out + self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
    return out
