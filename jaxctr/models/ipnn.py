"""Inner-product neural network, IPNN (Qu et al., ICDM 2016).

The product layer feeds the first hidden layer with the linear signal (all field embeddings)
and the inner products of every field pair; in the paper the first layer is
``ReLU(W_z z + W_p p + b)``, which is exactly a dense layer over the concatenation
``[z, p]``, so that is how it is computed. Numeric features join the concatenation raw.

Config: ``hidden`` (default 400-400-400), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


@base.register("ipnn")
class IPNN(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {"hidden": (400, 400, 400), "activation": "relu", "dropout": 0.0, "batch_norm": False}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    width = num_fields * embed_dim + layers.num_pairs(num_fields) + num_dense
    self.dnn = layers.mlp_from_config(cfg, width, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    b = inputs.fields.shape[0]
    products = layers.pairwise_products(inputs.fields)
    x = jnp.concatenate([inputs.fields.reshape(b, -1), products, inputs.dense], axis=-1)
    return self.dnn(x, train=train, rngs=rngs)[:, 0]
