"""AutoFIS (Liu et al., KDD 2020): a gate per feature interaction, pruned by gRDA.

On top of FM or DeepFM (AutoFM / AutoDeepFM), every second-order interaction
``<e_i, e_j>`` (pairs i<j in `layers.pair_indices` order) is multiplied by a gate. In the
search stage (``search=True``) the interactions first pass through a batch norm without
scale and shift, as in the official code, so that a gate's magnitude alone says how much
its interaction matters (an embedding's scale cannot hide behind a small gate); the gates
start near 0.6 and are trained by gRDA (``config.optimizer.gates="grda"``, see
`jaxctr.optim`), which sets useless ones exactly to zero.

In the retrain stage (``search=False``) the model is a plain FM/DeepFM whose interaction
term keeps only the pairs of ``mask`` (1 keep, 0 drop; default: all pairs), so ``model:
autofis`` with a mask is also the interaction-masked FM/DeepFM of ordinary configs.

Config: ``base`` (fm|deepfm), ``search``, ``mask`` (tuple of F*(F-1)/2 0/1 values),
``gate_init`` (0.6), ``bn_momentum``, and DeepFM's ``hidden``, ``activation``, ``dropout``,
``batch_norm``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxctr.models import base, layers

BASES = ("fm", "deepfm")


def interaction_mask(cfg, num_pairs: int) -> np.ndarray | None:
  """``cfg.mask`` as a float [P] array (None: every pair); checks its length and values."""
  mask = cfg.mask
  if mask is None or len(mask) == 0:
    return None
  mask = np.asarray(mask, np.float32)
  if mask.shape != (num_pairs,) or not np.isin(mask, (0.0, 1.0)).all():
    raise ValueError(
      f"config.model_config.mask: expected {num_pairs} values of 0/1 (one per field pair i<j), "
      f"got {mask.shape[0] if mask.ndim == 1 else mask.shape} values {np.unique(mask)[:5]}"
    )
  return mask


@base.register("autofis")
class AutoFIS(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults. ``init_from_fm``: the
  # retrain stage may start from the search's tables (`jaxctr.search`, train.init_tables_from).
  HPARAMS = {
    "base": "deepfm",
    "search": False,
    "mask": (),
    "gate_init": 0.6,
    "bn_momentum": 0.99,
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
    "init_from_fm": "",
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.base = cfg.base
    if self.base not in BASES:
      raise ValueError(f"config.model_config.base: {self.base!r}; expected one of {BASES}")
    self.search = bool(cfg.search)
    p = layers.num_pairs(num_fields)
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    mask = None if self.search else interaction_mask(cfg, p)
    self.mask = None if mask is None else tuple(float(m) for m in mask)  # static
    if self.search:
      init = float(cfg.gate_init)
      # Near 0.6 rather than exactly: identical gates would all move in lockstep at step 1.
      self.gates = nnx.Param(init + 1e-3 * nnx.initializers.normal(1.0)(rngs.params(), (p,)))
      self.bn = nnx.BatchNorm(
        p,
        use_scale=False,
        use_bias=False,
        momentum=float(cfg.bn_momentum),
        rngs=rngs,
      )
    dnn = None
    if self.base == "deepfm":
      dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense, rngs=rngs)
    self.dnn = nnx.data(dnn)

  def interactions(self, fields, *, train: bool = False):
    """The (normalised, gated or masked) inner products of every pair: [B, P]."""
    prods = layers.pairwise_products(fields)
    if self.search:
      return self.bn(prods, use_running_average=not train) * self.gates[...][None]
    if self.mask is not None:
      return prods * jnp.asarray(self.mask)[None]
    return prods

  def __call__(self, inputs, *, train=False, rngs=None):
    out = self.linear(inputs) + self.interactions(inputs.fields, train=train).sum(axis=1)
    if self.dnn is not None:
      out = out + self.dnn(layers.flatten_fields(inputs), train=train, rngs=rngs)[:, 0]
    return out
