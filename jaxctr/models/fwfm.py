"""Field-weighted FM (Pan et al., WWW 2018): FM whose pair terms carry a learned field-pair weight.

  logit = w0 + sum_i w_i + <w_n, dense> + sum_{i<j} r_{F(i),F(j)} <v_i, v_j>

Only one id per field here, so the field-pair weight `r` is one scalar per pair i<j. The linear
part is the paper's "LW" variant (one weight per id, served with the tables); numeric features
enter the linear part.

Config: ``pair_weight_init`` (default 1.0: the model starts as a plain FM, which trains
faster than starting from random pair weights).
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


@base.register("fwfm")
class FwFM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {"pair_weight_init": 1.0}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    del embed_dim
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    init = float(cfg.pair_weight_init)
    self.pair_weight = nnx.Param(jnp.full((layers.num_pairs(num_fields),), init))

  def __call__(self, inputs, *, train=False, rngs=None):
    pairs = layers.pairwise_products(inputs.fields)  # [B, P]
    return self.linear(inputs) + pairs @ self.pair_weight[...]
