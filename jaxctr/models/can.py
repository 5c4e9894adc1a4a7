"""CAN (Co-Action Network, Bian et al. 2022).

The target's own *co-action embedding* is reshaped into the weights and biases of a small
MLP (the micro-MLP); every history behaviour's *feed embedding* goes through it, orders
``1..c`` of the feed (``x, x^2, ...``) each once, ``tanh`` between layers, and the outputs
are summed over the real positions. So each (target, history item) pair gets its own
learned function instead of an inner product.

Parameter independence: the co-action and feed parameters are extra columns of the same
table rows (after the ordinary ``embed_dim`` columns), so one gather serves all three and
they never mix with the ordinary embedding. Row layout::

    [ ordinary (embed_dim) | micro-MLP weights (slices) | feed (feed_dim) ]

Options: ``combination_independent`` gives a target field one weight slice per history it
co-acts with (else one shared slice); ``order_independent`` gives every order its own
weights (else all orders share them).

The rest is a DNN over [fields, dense, sum-pooled history, co-action outputs]
(``attention=True`` adds DIN's attention-pooled history).

Config: ``co_pairs`` (default item and category pairs), ``feed_dim`` (4),
``micro_hidden`` (4, 4), ``orders`` (2), the two independence flags, ``attention``,
``hidden``/``activation``/``dropout``/``batch_norm`` (200-80).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxctr.models import attention, base, layers


def micro_shapes(feed_dim: int, hidden) -> list[tuple[int, int]]:
  dims = [feed_dim, *hidden]
  return list(zip(dims[:-1], dims[1:]))


def micro_size(feed_dim: int, hidden) -> int:
  """Parameters of one micro-MLP (weights and biases)."""
  return sum(a * b + b for a, b in micro_shapes(feed_dim, hidden))


def micro_mlp(weights, feed, mask, feed_dim: int, hidden, orders: int, order_independent: bool):
  """Co-action outputs [B, orders * hidden[-1]] of a target's weights over a history.

  Args:
    weights: [B, S] the target's co-action slice (S = micro_size, times ``orders`` when
      ``order_independent``).
    feed: [B, L, feed_dim] the history's feed embeddings.
    mask: [B, L] real positions.
  """
  n = micro_size(feed_dim, hidden)
  outs = []
  for o in range(1, orders + 1):
    w = weights[:, (o - 1) * n : o * n] if order_independent else weights[:, :n]
    h, at = feed**o, 0
    shapes = micro_shapes(feed_dim, hidden)
    for i, (a, b) in enumerate(shapes):
      kernel = w[:, at : at + a * b].reshape(-1, a, b)
      bias = w[:, at + a * b : at + a * b + b]
      at += a * b + b
      h = jnp.einsum("bla,bac->blc", h, kernel) + bias[:, None, :]
      if i < len(shapes) - 1:
        h = jnp.tanh(h)
    outs.append(attention.masked_sum(h, mask))
  return jnp.concatenate(outs, axis=-1)


def _settings(cfg):
  pairs = tuple(tuple(p) for p in cfg.co_pairs)
  feed = int(cfg.feed_dim)
  hidden = tuple(cfg.micro_hidden)
  orders = int(cfg.orders)
  order_ind = bool(cfg.order_independent)
  comb_ind = bool(cfg.combination_independent)
  if feed < 1 or not hidden or orders < 1:
    raise ValueError(
      f"can: need feed_dim >= 1, micro_hidden non-empty and orders >= 1, got {feed}, "
      f"{hidden}, {orders}"
    )
  per_target: dict[str, list[str]] = {}
  for t, h in pairs:
    per_target.setdefault(t, []).append(h)
  slices = max(len(v) for v in per_target.values()) if comb_ind else 1
  per_slice = micro_size(feed, hidden) * (orders if order_ind else 1)
  return pairs, feed, hidden, orders, order_ind, comb_ind, per_target, slices, per_slice


@base.register("can", family="behaviour")
class CAN(base.CTRModel):
  sequence_pooling = "none"
  table_dim_reads_config = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "pairs": attention.DEFAULT_PAIRS,
    "co_pairs": attention.DEFAULT_PAIRS,
    "feed_dim": 4,
    "micro_hidden": (4, 4),
    "orders": 2,
    "order_independent": False,
    "combination_independent": False,
    "attention": False,
    "hidden": (200, 80),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  @staticmethod
  def table_dim(embed_dim: int, num_fields: int, cfg=None) -> int:
    """Row width: ordinary, co-action and feed columns (``cfg``: raw or defaults-filled)."""
    del num_fields
    cfg = base.hyperparameters("can", cfg)  # idempotent on an already filled config
    _, feed, _, _, _, _, _, slices, per_slice = _settings(cfg)
    return embed_dim + slices * per_slice + feed

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    (
      self.co_pairs,
      self.feed_dim,
      self.micro_hidden,
      self.orders,
      self.order_ind,
      self.comb_ind,
      per_target,
      _,
      self.per_slice,
    ) = _settings(cfg)
    self.per_target = {t: tuple(v) for t, v in per_target.items()}
    self.embed_dim = embed_dim
    self.pairs = tuple(tuple(p) for p in cfg.pairs)
    key_dim = len(self.pairs) * embed_dim
    co_dim = len(self.co_pairs) * self.orders * self.micro_hidden[-1]
    self.attention = (
      attention.DINAttention(key_dim, (80, 40), activation="dice", rngs=rngs)
      if cfg.attention
      else None
    )
    interest = key_dim * (2 if self.attention is not None else 1)
    self.dnn = layers.mlp_from_config(
      cfg,
      num_fields * embed_dim + num_dense + interest + co_dim,
      rngs=rngs,
    )

  def co_action(self, inputs):
    """[B, co_pairs * orders * micro_hidden[-1]] co-action features."""
    names = list(inputs.field_names)
    d = self.embed_dim
    outs = []
    for t, h in self.co_pairs:
      j = self.per_target[t].index(h) if self.comb_ind else 0
      row = inputs.fields[:, names.index(t)]
      w = row[:, d + j * self.per_slice : d + (j + 1) * self.per_slice]
      feed = inputs.sequences[h][..., -self.feed_dim :]
      mask = inputs.sequences[h + "/mask"]
      outs.append(
        micro_mlp(w, feed, mask, self.feed_dim, self.micro_hidden, self.orders, self.order_ind)
      )
    return jnp.concatenate(outs, axis=-1)

  def __call__(self, inputs, *, train=False, rngs=None):
    d = self.embed_dim
    q, k, mask = attention.target_and_history(inputs, self.pairs, d)
    parts = [inputs.fields[..., :d].reshape(inputs.fields.shape[0], -1), inputs.dense]
    parts.append(attention.masked_sum(k, mask))
    if self.attention is not None:
      parts.append(self.attention(q, k, mask, train=train))
    parts.append(self.co_action(inputs))
    return self.dnn(jnp.concatenate(parts, axis=1), train=train, rngs=rngs)[:, 0]
