"""DeepFM (Guo et al., IJCAI 2017): FM and a DNN over shared embeddings, summed logits.

Numeric features enter the linear term and the DNN raw (already transformed).
Config: ``hidden`` (default 400-400-400), ``dropout``, ``batch_norm``, ``activation``.
"""

from flax import nnx

from jaxctr.models import base, layers


@base.register("deepfm")
class DeepFM(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {"hidden": (400, 400, 400), "activation": "relu", "dropout": 0.0, "batch_norm": False}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    self.dnn = layers.MLP(
      num_fields * embed_dim + num_dense,
      tuple(cfg.hidden),
      out_features=1,
      activation=cfg.activation,
      dropout=cfg.dropout,
      batch_norm=cfg.batch_norm,
      rngs=rngs,
    )

  def __call__(self, inputs, *, train=False, rngs=None):
    deep = self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
    return self.linear(inputs) + layers.fm_interaction(inputs.fields) + deep
