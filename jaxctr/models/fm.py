"""Factorization Machine (Rendle, 2010): first-order term + O(F*D) pairwise term."""

from flax import nnx

from jaxctr.models import base, layers


@base.register("fm")
class FM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    del cfg, num_fields, embed_dim
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    return self.linear(inputs) + layers.fm_interaction(inputs.fields)
