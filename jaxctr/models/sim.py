"""SIM (Search-based Interest Model, Pi et al. 2020) for long behaviour histories.

Two stages instead of attention over the whole history:

1. General search unit (GSU) picks ``top_k`` behaviours out of the long history:
   * ``search="hard"``: the behaviours whose search key (the category) equals the
     target's, the most recent first (`hard_search`);
   * ``search="soft"``: inner-product top-k between the projected target and history
     embeddings (`soft_search`). The projections are trained by an auxiliary CTR head
     over the softmax(inner product)-weighted sum of the *whole* history (SIM's soft
     search is trained this way; ``aux_weight`` scales its loss).
2. Exact search unit (ESU): multi-head target attention over the retrieved behaviours.

The short recent history (its last ``short_len`` behaviours) goes beside it through
DIN's activation unit. A DNN reads [fields, dense, ESU output, short-term interest].
Only the search touches all L behaviours (an integer compare or a d-wide inner product),
so cost grows far slower in L than DIN's MLP over every behaviour.

Config: ``pairs``, ``search`` (soft|hard), ``search_key`` ((target, history) of the hard
search, default the category), ``top_k`` (50), ``short_len`` (10), ``proj_dim`` (16),
``heads`` (2), ``head_dim`` (0: key width / heads), ``aux_weight`` (1.0), ``aux_hidden``
(64,), ``hidden``/``activation``/``dropout``/``batch_norm`` (200-80).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxctr.models import attention, base, layers

SEARCHES = ("soft", "hard")


def hard_search(target_key, hist_keys, mask, k: int):
  """Positions of the (up to) ``k`` most recent behaviours with the target's key.

  Args:
    target_key: [B] the target's key id (e.g. its category).
    hist_keys: [B, L] the history's key ids (-1 at padding), oldest first.
    mask: [B, L] real positions.

  Returns:
    (positions [B, k'], found [B, k']) with k' = min(k, L); ``found`` is 0 where fewer
    than k' behaviours match.
  """
  match = (hist_keys == target_key[:, None]) & (mask > 0)
  recency = jnp.broadcast_to(jnp.arange(hist_keys.shape[1], dtype=jnp.float32), match.shape)
  return attention.top_k_positions(recency, match, k)


def soft_search(q, keys, mask, k: int):
  """Top-k positions by inner product <q, key_l> over the real positions."""
  scores = jnp.einsum("bd,bld->bl", q, keys)
  return attention.top_k_positions(jax.lax.stop_gradient(scores), mask > 0, k)


@base.register("sim", family="behaviour")
class SIM(base.CTRModel):
  sequence_pooling = "none"
  needs_ids = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "pairs": attention.DEFAULT_PAIRS,
    "search": "soft",
    "search_key": ("cate_id", "cate_history"),
    "top_k": 50,
    "short_len": 10,
    "proj_dim": 16,
    "heads": 2,
    "head_dim": 0,
    "aux_weight": 1.0,
    "aux_hidden": (64,),
    "hidden": (200, 80),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.pairs = tuple(tuple(p) for p in cfg.pairs)
    self.search = cfg.search
    if self.search not in SEARCHES:
      raise ValueError(f"sim: search must be one of {SEARCHES}, got {self.search!r}")
    self.search_key = tuple(cfg.search_key)
    self.top_k = int(cfg.top_k)
    self.short_len = int(cfg.short_len)
    self.aux_weight = float(cfg.aux_weight)
    self.embed_dim = embed_dim
    kd = len(self.pairs) * embed_dim
    heads = int(cfg.heads)
    head_dim = int(cfg.head_dim) or max(kd // heads, 1)
    proj = int(cfg.proj_dim)
    self.proj_q = nnx.Linear(kd, proj, use_bias=False, rngs=rngs)
    self.proj_k = nnx.Linear(kd, proj, use_bias=False, rngs=rngs)
    self.aux = (
      layers.MLP(2 * kd, tuple(cfg.aux_hidden), out_features=1, rngs=rngs)
      if self.search == "soft"
      else None
    )
    self.esu = attention.TargetAttention(kd, kd, heads, head_dim, rngs=rngs)
    self.short = attention.DINAttention(kd, (80, 40), activation="dice", rngs=rngs)
    self.dnn = layers.mlp_from_config(
      cfg,
      num_fields * embed_dim + num_dense + self.esu.out_dim + kd,
      rngs=rngs,
    )

  def retrieve(self, inputs, q, k, mask):
    """GSU: (positions, found) of the top-k behaviours, and the soft-search scores (or None)."""
    if self.search == "hard":
      t, h = self.search_key
      if t not in inputs.ids or h not in inputs.ids:
        raise ValueError(
          f"sim: hard search needs the raw ids of {t!r} and {h!r} (model.needs_ids); "
          f"have {sorted(inputs.ids)}"
        )
      pos, found = hard_search(inputs.ids[t], inputs.ids[h], mask, self.top_k)
      return pos, found, None
    qp, kp = self.proj_q(q), self.proj_k(k)
    pos, found = soft_search(qp, kp, mask, self.top_k)
    return pos, found, jnp.einsum("bd,bld->bl", qp, kp)

  def __call__(self, inputs, *, train=False, rngs=None):
    q, k, mask = attention.target_and_history(inputs, self.pairs)
    pos, found, soft = self.retrieve(inputs, q, k, mask)
    long_interest = self.esu(q, attention.take_positions(k, pos), found)
    s = min(self.short_len, k.shape[1])
    short_interest = self.short(q, k[:, -s:], mask[:, -s:], train=train)  # pre-padded: newest last
    x = jnp.concatenate(
      [
        inputs.fields.reshape(inputs.fields.shape[0], -1),
        inputs.dense,
        long_interest,
        short_interest,
      ],
      axis=1,
    )
    logits = self.dnn(x, train=train, rngs=rngs)[:, 0]
    if soft is None or not train:
      return logits
    pooled = jnp.einsum("bl,bld->bd", attention.masked_softmax(soft, mask), k)
    aux_logits = self.aux(jnp.concatenate([q, pooled], axis=1))[:, 0]
    return base.ModelOutput(logits, {"aux_logits": aux_logits})

  def aux_loss(self, aux, logits, labels):
    del logits
    if "aux_logits" not in aux:
      return 0.0
    bce = optax.sigmoid_binary_cross_entropy(aux["aux_logits"], labels).mean()
    return self.aux_weight * bce
