"""Plain DNN: an MLP over the concatenated field embeddings and the raw numeric features.

The embedding-MLP baseline every deep CTR model is compared with (BARS "DNN").

Config: ``hidden`` (default 400-400-400), ``activation``, ``dropout``, ``batch_norm``.
"""

from flax import nnx

from jaxctr.models import base, layers


@base.register("dnn")
class DNN(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {"hidden": (400, 400, 400), "activation": "relu", "dropout": 0.0, "batch_norm": False}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    return self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
