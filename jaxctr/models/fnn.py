"""FNN (Zhang et al., ECIR 2016): an MLP over FM-pretrained embeddings.

The network sees, per field, the FM first-order weight and latent vector ``(w_i, v_i)``
together with the raw numeric features. That is why ``needs_linear`` is set: the tables
then have exactly an FM's layout (D latent columns + 1 first-order column), so an FM
checkpoint's tables can be restored into them one to one.

Initialisation from FM. The model never sees tables: the trainer restores them. The key is
``model_config.init_from_fm`` (a path to a trained FM checkpoint directory; empty: random
init, i.e. FNN degenerates to a DNN over (w_i, v_i)). The FM must use the same
``embed_dim`` and features.

Config: ``hidden`` (default 400-400-400), ``activation`` (the paper used tanh; default relu),
``dropout``, ``batch_norm``, ``init_from_fm`` (read by the trainer, ignored here).
"""

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


@base.register("fnn")
class FNN(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "init_from_fm": "",
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.dnn = layers.mlp_from_config(cfg, num_fields * (embed_dim + 1) + num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    if inputs.linear is None:
      raise ValueError("FNN needs inputs.linear (the FM first-order weights)")
    b = inputs.fields.shape[0]
    x = jnp.concatenate([inputs.linear, inputs.fields.reshape(b, -1), inputs.dense], axis=-1)
    return self.dnn(x, train=train, rngs=rngs)[:, 0]
