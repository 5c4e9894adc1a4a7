"""DLRM (Naumov et al., 2019): bottom MLP for numeric features, dot interaction, top MLP.

* Bottom MLP: numeric features -> one more D-vector (ReLU on every layer, as the reference
  implementation).
* Interaction: the inner product of every pair among the F field embeddings and that vector
  (no self-products), concatenated with the bottom-MLP output.
* Top MLP -> logit.

With no numeric features (N = 0) a learned constant D-vector stands in for the bottom-MLP
output: its dot products with the fields are what lets DLRM express per-id (first-order)
effects, which pure field-field dot products cannot.

Config: ``bottom_hidden`` (default 512-256-64; the output layer of width D is added),
``hidden`` (top MLP, default 512-256), ``activation``, ``dropout``, ``batch_norm`` (top MLP).
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


@base.register("dlrm")
class DLRM(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "bottom_hidden": (512, 256, 64),
    "hidden": (512, 256),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    # nnx.data: these become modules/params below; a plain None would make them static.
    self.bottom, self.dense_vector = nnx.data(None), nnx.data(None)
    if num_dense:
      self.bottom = layers.MLP(num_dense, (*tuple(cfg.bottom_hidden), embed_dim), rngs=rngs)
    else:
      self.dense_vector = layers.normal_param(rngs, (embed_dim,), 0.1)
    width = embed_dim + layers.num_pairs(num_fields + 1)
    self.top = layers.mlp_from_config(cfg, width, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    v = inputs.fields
    if self.bottom is not None:
      z = self.bottom(inputs.dense, train=train, rngs=rngs)
    else:
      z = jnp.broadcast_to(self.dense_vector[...], (v.shape[0], v.shape[2]))
    t = jnp.concatenate([z[:, None].astype(v.dtype), v], axis=1)
    x = jnp.concatenate([z, layers.pairwise_products(t)], axis=-1)
    return self.top(x, train=train, rngs=rngs)[:, 0]
