"""OptInter (Lyu et al., ICDE 2022): per field pair, no / memorized / factorized interaction.

Every field pair i<j (`layers.pair_indices` order) is modelled one of three ways:

* naive (0): not at all;
* memorized (1): the pair's hashed cross-product id has its own embedding row (the trainer
  serves ``inputs.sequences["cross_embed"]`` [B, M, D] for ``model_config.memorized_pairs``,
  see `jaxctr.crosses`);
* factorized (2): the element-wise product ``e_i * e_j`` of the fields' embeddings.

The field embeddings and the chosen interaction embeddings are concatenated into an MLP.

Search (``search=True``): every pair is memorized and factorized at once and its
interaction is the mixture ``sum_k w_k * x_k`` with ``w = softmax(alpha_pair / tau)``
(``selection="softmax"``, the official code, tau annealed from ``tau_start`` to ``tau_end``
over ``anneal_steps`` training steps) or a Gumbel-softmax sample (``selection="gumbel"``,
the paper). Each candidate passes through a batch norm without scale and shift first, so
the weights compare candidates at one scale (``candidate_bn``, default on). The architecture weights ``alpha`` [P, 3] are
ordinary dense parameters trained jointly; the choice is their argmax.

Retrain (``search=False``): ``choices`` (P values in {0, 1, 2}) fixes each pair's kind;
the memorized ones must be listed, in pair order, in ``memorized_pairs``. Empty ``choices``
factorize every pair (the model before any search).

Config: ``search``, ``choices``, ``selection``, ``tau_start``, ``tau_end``,
``anneal_steps``, ``candidate_bn``, ``naive_init`` (initial advantage of alpha's naive entry), and
``hidden``, ``activation``, ``dropout``, ``batch_norm``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxctr.models import base, layers

MEMORIZED_KEY = "cross_embed"  # jaxctr.crosses.MEMORIZED_KEY (models sit below the trainer)
KINDS = ("naive", "memorized", "factorized")
SELECTIONS = ("softmax", "gumbel")


class SearchStep(nnx.Variable):
  """Training steps seen by the search (drives the temperature); not a parameter."""


def check_choices(cfg, num_pairs: int) -> np.ndarray:
  """``cfg.choices`` as [P] ints; empty (no search run yet): every pair factorized."""
  choices = np.asarray(cfg.choices or (), np.int64)
  if choices.size == 0:
    return np.full(num_pairs, 2, np.int64)
  if choices.shape != (num_pairs,) or not np.isin(choices, (0, 1, 2)).all():
    raise ValueError(
      f"config.model_config.choices: expected {num_pairs} values in {{0, 1, 2}} "
      f"({'/'.join(KINDS)}, one per field pair i<j), got {choices.tolist()[:10]}"
    )
  return choices


@base.register("optinter")
class OptInter(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults. ``memorized_pairs`` and
  # ``memorized_hash_buckets`` size the memorized crosses (`jaxctr.crosses`).
  HPARAMS = {
    "search": False,
    "choices": (),
    "memorized_pairs": (),
    "memorized_hash_buckets": 100_000,
    "selection": "softmax",
    "tau_start": 1.0,
    "tau_end": 0.1,
    "anneal_steps": 1000,
    "naive_init": 0.0,
    "candidate_bn": True,
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    p = layers.num_pairs(num_fields)
    self.search = bool(cfg.search)
    self.num_pairs = p
    if self.search:
      self.selection = cfg.selection
      if self.selection not in SELECTIONS:
        raise ValueError(
          f"config.model_config.selection: {self.selection!r}; expected one of {SELECTIONS}"
        )
      self.tau_start = float(cfg.tau_start)
      self.tau_end = float(cfg.tau_end)
      self.anneal_steps = max(int(cfg.anneal_steps), 1)
      alpha = np.zeros((p, 3), np.float32)
      alpha[:, 0] = float(cfg.naive_init)
      self.alpha = nnx.Param(jnp.asarray(alpha))
      self.step = SearchStep(jnp.zeros((), jnp.float32))
      bn = bool(cfg.candidate_bn)
      self.bn_mem = nnx.data(
        nnx.BatchNorm(p * embed_dim, use_scale=False, use_bias=False, rngs=rngs) if bn else None
      )
      self.bn_fac = nnx.data(
        nnx.BatchNorm(p * embed_dim, use_scale=False, use_bias=False, rngs=rngs) if bn else None
      )
      kept = p
    else:
      choices = check_choices(cfg, p)
      self.mem_idx = tuple(int(i) for i in np.flatnonzero(choices == 1))
      self.fac_idx = tuple(int(i) for i in np.flatnonzero(choices == 2))
      n_mem = len(cfg.memorized_pairs or ())
      if n_mem != len(self.mem_idx):
        raise ValueError(
          f"config.model_config: choices memorize {len(self.mem_idx)} pairs but "
          f"memorized_pairs lists {n_mem}"
        )
      kept = len(self.mem_idx) + len(self.fac_idx)
    width = (num_fields + kept) * embed_dim + num_dense
    self.dnn = layers.mlp_from_config(cfg, width, rngs=rngs)

  def temperature(self) -> jax.Array:
    frac = jnp.minimum(self.step.get_value() / self.anneal_steps, 1.0)
    return self.tau_start * (self.tau_end / self.tau_start) ** frac

  def weights(self, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
    """Mixture weights [P, 3] over (naive, memorized, factorized)."""
    logits = self.alpha[...]
    if self.selection == "gumbel" and train and rngs is not None:
      logits = logits + jax.random.gumbel(rngs.dropout(), logits.shape)
    return jax.nn.softmax(logits / self.temperature(), axis=-1)

  def __call__(self, inputs, *, train=False, rngs=None):
    b, _, d = inputs.fields.shape
    left, right = layers.pair_fields(inputs.fields)
    fac = left * right  # [B, P, D]
    mem = inputs.sequences.get(MEMORIZED_KEY)
    if self.search:
      if mem is None or mem.shape[1] != self.num_pairs:
        raise ValueError(
          f"optinter search memorizes all {self.num_pairs} pairs: model_config.memorized_pairs "
          "must list every field pair"
        )
      w = self.weights(train=train, rngs=rngs)
      if self.bn_mem is not None:
        mem = self.bn_mem(mem.reshape(b, -1), use_running_average=not train).reshape(mem.shape)
        fac = self.bn_fac(fac.reshape(b, -1), use_running_average=not train).reshape(fac.shape)
      inter = w[None, :, 1:2] * mem + w[None, :, 2:3] * fac
      if train:
        self.step.set_value(self.step.get_value() + 1.0)
    else:
      parts = [fac[:, list(self.fac_idx)]] if self.fac_idx else []
      if self.mem_idx:
        if mem is None or mem.shape[1] != len(self.mem_idx):
          raise ValueError(f"optinter: {len(self.mem_idx)} memorized pairs but no such crosses")
        parts.append(mem)
      inter = jnp.concatenate(parts, axis=1) if parts else jnp.zeros((b, 0, d), fac.dtype)
    x = jnp.concatenate([inputs.fields.reshape(b, -1), inter.reshape(b, -1), inputs.dense], -1)
    return self.dnn(x, train=train, rngs=rngs)[:, 0]
