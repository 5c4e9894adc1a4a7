"""Wide & Deep (Cheng et al., DLRS 2016): a linear model over raw and cross-product features,
jointly trained with a DNN over the embeddings; the two logits are summed.

Cross-product features stay id-free. Crossing and hashing ids is the trainer's job; the model
only sums first-order weights. For ``model_config.cross_pairs = ((field_a, field_b), ...)``
(P pairs of categorical feature names) the trainer must:

* hash every pair's ids into one shared cross vocabulary,
  ``cross_id = hash(pair_index, id_a, id_b) % cross_hash_buckets`` (reserve a row for "either
  id missing/OOV" if it likes),
* keep a width-1 sparse table of ``model_config.cross_hash_buckets`` rows for it (updated by
  the embedding optimizer; the paper trained the wide part with FTRL + L1), and
* pass the looked-up weights as ``inputs.sequences["cross_linear"]``: float [B, P] (a
  trailing singleton axis, [B, P, 1], is accepted too).

With ``cross_pairs`` empty the wide part is the plain first-order term (ids + numeric).
Numeric features enter the wide part linearly and the deep part raw.

Config: ``cross_pairs`` (default ()), ``cross_hash_buckets`` (trainer only, default 1e6),
``hidden`` (default 1024-512-256 as in the paper), ``activation``, ``dropout``, ``batch_norm``.
"""

from flax import nnx

from jaxctr.models import base, layers

CROSS_KEY = "cross_linear"


@base.register("wide_deep")
class WideDeep(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "cross_pairs": (),
    "hidden": (1024, 512, 256),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "cross_hash_buckets": 1_000_000,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.num_cross = len(cfg.cross_pairs or ())
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    self.dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense, rngs=rngs)

  def wide(self, inputs):
    out = self.linear(inputs)
    if self.num_cross:
      if CROSS_KEY not in inputs.sequences:
        raise ValueError(
          f"wide_deep has {self.num_cross} cross_pairs but no inputs.sequences[{CROSS_KEY!r}]"
        )
      cross = inputs.sequences[CROSS_KEY]
      b = cross.shape[0]
      if cross.reshape(b, -1).shape[1] != self.num_cross:
        raise ValueError(f"{CROSS_KEY} has shape {cross.shape}; expected [B, {self.num_cross}]")
      out = out + cross.reshape(b, -1).sum(axis=1)
    return out

  def __call__(self, inputs, *, train=False, rngs=None):
    deep = self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
    return self.wide(inputs) + deep
