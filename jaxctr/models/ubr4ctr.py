"""UBR4CTR (User Behavior Retrieval for CTR, Qin et al. 2020).

Instead of attending over all behaviours, retrieve the relevant ones with a query made
of some of the target's feature values:

1. Query selection: self-attention over the target's fields (one per (target, history)
   pair), then a per-field Bernoulli ``p_f``; in training a query ``s ~ Bernoulli(p)`` is
   sampled, in evaluation ``s_f = [p_f > 0.5]``. The selector is trained with REINFORCE:
   the reward of a sampled query is the prediction model's log-likelihood of the label
   (``-logloss``, no gradient), minus the batch mean as baseline; the loss term is
   ``-(reward - baseline) * log P(s)`` (``reinforce_weight`` scales it).
2. Retrieval: an inverted index per user, field value -> behaviour positions (`build_index`:
   the history values sorted, with each position's rank in that order; `lookup` finds a
   value's postings by binary search), built and searched on device instead of an
   external search engine. A behaviour's score is the number of selected fields whose
   value it shares with the target (ties: the more recent first); the top ``top_k`` are
   retrieved.
3. Prediction: DIN's activation unit over the retrieved behaviours, then a DNN over
   [fields, dense, retrieved interest].

Config: ``pairs``, ``top_k`` (20), ``reinforce_weight`` (1.0), ``selector_dim`` (16),
``attention_hidden`` (80-40), ``hidden``/``activation``/``dropout``/``batch_norm`` (200-80).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxctr.models import attention, base, layers


def build_index(values):
  """Inverted index of each row's behaviour values [B, L] (-1 at padding).

  Returns (sorted values [B, L], rank [B, L]): ``rank[b, l]`` is the place of behaviour
  ``l`` in row b's sorted order, so the postings of a value v are the positions whose
  rank lies in [searchsorted(v, left), searchsorted(v, right)).
  """
  order = jnp.argsort(values, axis=1, stable=True)
  sorted_values = jnp.take_along_axis(values, order, axis=1)
  rank = jnp.argsort(order, axis=1)
  return sorted_values, rank


def lookup(index, query):
  """Postings of one value per row: [B, L] bool, True at the positions holding query[b]."""
  sorted_values, rank = index
  search = jax.vmap(lambda s, q: jnp.searchsorted(s, q, side="left"))
  lo = search(sorted_values, query)
  hi = jax.vmap(lambda s, q: jnp.searchsorted(s, q, side="right"))(sorted_values, query)
  return (rank >= lo[:, None]) & (rank < hi[:, None])


def retrieve(target_ids, hist_ids, selected, mask, k: int):
  """Top-k behaviours by the number of selected fields matching the target.

  Args:
    target_ids: [B, P] target value of each selectable field.
    hist_ids: [B, P, L] the behaviours' values of those fields.
    selected: [B, P] 0/1 query selection.
    mask: [B, L] real positions.

  Returns:
    (positions [B, k'], found [B, k'], scores [B, L]) with k' = min(k, L).
  """
  length = hist_ids.shape[-1]
  scores = jnp.zeros(mask.shape, jnp.float32)
  for f in range(hist_ids.shape[1]):
    hits = lookup(build_index(hist_ids[:, f]), target_ids[:, f])
    scores = scores + selected[:, f : f + 1] * hits
  # Ties by recency: the position adds less than one match.
  ranked = scores + jnp.arange(length, dtype=jnp.float32) / (2.0 * length)
  pos, found = attention.top_k_positions(ranked, mask > 0, k)
  return pos, found, scores


@base.register("ubr4ctr", family="behaviour")
class UBR4CTR(base.CTRModel):
  sequence_pooling = "none"
  needs_ids = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "pairs": attention.DEFAULT_PAIRS,
    "top_k": 20,
    "reinforce_weight": 1.0,
    "selector_dim": 16,
    "attention_hidden": (80, 40),
    "hidden": (200, 80),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    self.pairs = tuple(tuple(p) for p in cfg.pairs)
    self.top_k = int(cfg.top_k)
    self.reinforce_weight = float(cfg.reinforce_weight)
    sd = int(cfg.selector_dim)
    self.embed_dim = embed_dim
    kd = len(self.pairs) * embed_dim
    self.sel_q = nnx.Linear(embed_dim, sd, use_bias=False, rngs=rngs)
    self.sel_k = nnx.Linear(embed_dim, sd, use_bias=False, rngs=rngs)
    self.sel_v = nnx.Linear(embed_dim, sd, use_bias=False, rngs=rngs)
    self.sel_out = nnx.Linear(sd, 1, rngs=rngs)
    self.attention = attention.DINAttention(
      kd, tuple(cfg.attention_hidden), activation="dice", rngs=rngs
    )
    self.dnn = layers.mlp_from_config(cfg, num_fields * embed_dim + num_dense + kd, rngs=rngs)

  def selection_probs(self, inputs):
    """p [B, P]: self-attention over the target's fields, then a sigmoid per field."""
    names = list(inputs.field_names)
    t = jnp.stack([inputs.fields[:, names.index(f)] for f, _ in self.pairs], axis=1)
    t = jax.lax.stop_gradient(t)  # the selector learns from REINFORCE only
    q, k, v = self.sel_q(t), self.sel_k(t), self.sel_v(t)
    w = jax.nn.softmax(jnp.einsum("bpd,bqd->bpq", q, k) / jnp.sqrt(float(q.shape[-1])), axis=-1)
    h = jnp.einsum("bpq,bqd->bpd", w, v) + v
    return jax.nn.sigmoid(self.sel_out(h)[..., 0])

  def __call__(self, inputs, *, train=False, rngs=None):
    for f, h in self.pairs:
      if f not in inputs.ids or h not in inputs.ids:
        raise ValueError(
          f"ubr4ctr: needs the raw ids of {f!r} and {h!r} (model.needs_ids); "
          f"have {sorted(inputs.ids)}"
        )
    q, k, mask = attention.target_and_history(inputs, self.pairs)
    p = self.selection_probs(inputs)
    sample = train and rngs is not None
    if sample:
      s = (jax.random.uniform(rngs.dropout(), p.shape) < p).astype(jnp.float32)
    else:
      s = (p > 0.5).astype(jnp.float32)
    target_ids = jnp.stack([inputs.ids[f] for f, _ in self.pairs], axis=1)
    hist_ids = jnp.stack([inputs.ids[h] for _, h in self.pairs], axis=1)
    pos, found, _ = retrieve(target_ids, hist_ids, s, mask, self.top_k)
    interest = self.attention(q, attention.take_positions(k, pos), found, train=train)
    x = jnp.concatenate(
      [inputs.fields.reshape(inputs.fields.shape[0], -1), inputs.dense, interest], axis=1
    )
    logits = self.dnn(x, train=train, rngs=rngs)[:, 0]
    if not sample:
      return logits
    eps = 1e-6
    log_prob = (s * jnp.log(p + eps) + (1 - s) * jnp.log(1 - p + eps)).sum(axis=1)
    return base.ModelOutput(logits, {"log_prob": log_prob})

  def aux_loss(self, aux, logits, labels):
    if "log_prob" not in aux:
      return 0.0
    reward = -jax.lax.stop_gradient(optax.sigmoid_binary_cross_entropy(logits, labels))
    advantage = reward - reward.mean()
    return -self.reinforce_weight * jnp.mean(advantage * aux["log_prob"])
