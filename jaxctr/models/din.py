"""DIN (Deep Interest Network, Zhou et al. 2018) and the sum-pooled-history DNN baseline.

DIN weighs every history behaviour by a local activation unit over the target
(`attention.DINAttention`, ``[q, k, q - k, q * k]`` -> MLP with Dice or PReLU) and feeds
the weighted sum, the target and the other fields to an MLP. Weights are not normalised
by default (``softmax=False``, FuxiCTR's default; the original code and BARS' tuned Amazon
config use softmax).

Config: ``pairs`` ((target field, history) pairs, default item and category),
``attention_hidden`` (80-40), ``attention_activation`` (dice|prelu|...), ``softmax``,
``hidden``/``activation``/``dropout``/``batch_norm`` of the output MLP (200-80).

The baseline it is compared with is the zoo's ``dnn`` on the same data: sequence
features keep their declared ``sum`` pooling there, so the DNN sees the target fields and
the sum of the history embeddings.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import attention, base, layers


class _Behaviour(base.CTRModel):
  """Shared construction: pairs, output MLP over [fields, dense, interest]."""

  sequence_pooling = "none"

  def _setup(self, cfg, num_fields, embed_dim, num_dense, interest_dim, rngs):
    self.pairs = tuple(tuple(p) for p in cfg.pairs)
    self.embed_dim = embed_dim
    self.key_dim = len(self.pairs) * embed_dim
    self.dnn = layers.mlp_from_config(
      cfg, num_fields * embed_dim + num_dense + interest_dim, rngs=rngs
    )

  def _output(self, inputs, interest, *, train, rngs):
    d = self.embed_dim
    x = jnp.concatenate(
      [inputs.fields[..., :d].reshape(inputs.fields.shape[0], -1), inputs.dense, interest], axis=1
    )
    return self.dnn(x, train=train, rngs=rngs)[:, 0]


@base.register("din", family="behaviour")
class DIN(_Behaviour):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "pairs": attention.DEFAULT_PAIRS,
    "attention_hidden": (80, 40),
    "attention_activation": "dice",
    "softmax": False,
    "hidden": (200, 80),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    pairs = cfg.pairs
    self._setup(cfg, num_fields, embed_dim, num_dense, len(pairs) * embed_dim, rngs)
    self.attention = attention.DINAttention(
      self.key_dim,
      tuple(cfg.attention_hidden),
      activation=cfg.attention_activation,
      softmax=cfg.softmax,
      rngs=rngs,
    )

  def __call__(self, inputs, *, train=False, rngs=None):
    q, k, mask = attention.target_and_history(inputs, self.pairs)
    interest = self.attention(q, k, mask, train=train)
    return self._output(inputs, interest, train=train, rngs=rngs)
