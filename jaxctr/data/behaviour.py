"""Synthetic user-behaviour data with a planted model and a known oracle AUC.

Each row is (user, target item, its category, the user's item history and the
histories' categories), oldest behaviour first, padded at the start with -1.
Users have a few favourite categories; their history draws most items from them.
The click logit is

    bias + s_first * w(item)                        (first order: the item alone)
         + s_cat   * sum_h [cate_h == cate_t] r(age_h) / Z
         + s_co    * sum_h G[g(t), g(h)] / sqrt(len)

* the *category* term counts history behaviours of the target's category, weighted by
  recency ``r(age) = exp(-age / recency)`` (``Z`` normalises the weights' total to 1 per
  row, so long and short histories carry the same signal strength);
* the *co-action* term sums a random +-1 table ``G`` over item groups ``g`` (items hashed
  into ``co_groups`` groups) for every (target, history item) pair: a full-rank
  target x history interaction that an inner product of low-dimensional embeddings
  (FM/DeepFM over the sum-pooled history) cannot represent but a per-target function of
  each history item (CAN's micro-MLP, an attention unit) can.

A DNN over the sum-pooled history sees only the history's category histogram mixed into
one vector and has to pull ``histogram[cate_t]`` out of it; target attention reads it
directly. The oracle AUC of a split is the AUC of its planted logit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxctr.data import memory, sequences
from jaxctr.data.synthetic import auc, hash_unit, splitmix64

SPLIT_INDEX = {"train": 0, "valid": 1, "test": 2}
CATEGORICAL = ("user_id", "item_id", "cate_id")


@dataclasses.dataclass(frozen=True)
class BehaviourConfig:
  """Shape and signal of the synthetic behaviour data.

  Attributes:
    num_users, num_items, num_cates: Vocabulary sizes (ids start at 1; 0 is OOV).
    min_len, max_len: History length range (uniform per row); ``max_len`` is also the
      stored width (up to 10,000 and more).
    favourite_cates: Favourite categories per user.
    p_favourite: Probability that a history behaviour (and, with half of it, the
      target) comes from the user's favourite categories.
    recency: Decay scale (in behaviours) of the category term's weights.
    co_groups: Item groups of the planted co-action table.
    s_first, s_cat, s_co: Strengths of the first-order, category and co-action terms.
    bias: Logit bias.
    seed: Seed of everything.
  """

  num_users: int = 1000
  num_items: int = 2000
  num_cates: int = 40
  min_len: int = 5
  max_len: int = 50
  favourite_cates: int = 3
  p_favourite: float = 0.7
  recency: float = 20.0
  co_groups: int = 16
  s_first: float = 0.3
  s_cat: float = 3.0
  s_co: float = 0.8
  bias: float = -1.0
  seed: int = 7

  def __post_init__(self):
    if not 1 <= self.min_len <= self.max_len:
      raise ValueError(f"BehaviourConfig: need 1 <= min_len <= max_len, got {self}")


class BehaviourGenerator:
  """Generator bound to a config (a pure function of config, split and row count)."""

  def __init__(self, config: BehaviourConfig = BehaviourConfig()):
    self.config = c = config
    items = np.arange(c.num_items + 1)
    h = splitmix64(items.astype(np.uint64) ^ np.uint64(c.seed * 7919 + 1))
    self.item_cate = (h % np.uint64(c.num_cates)).astype(np.int64) + 1
    self.item_group = ((h >> np.uint64(20)) % np.uint64(c.co_groups)).astype(np.int64)
    self.first = hash_unit(items, c.seed, 0, 1)
    rng = np.random.default_rng([c.seed, 5])
    self.co_table = rng.choice([-1.0, 1.0], size=(c.co_groups, c.co_groups))
    self.items_by_cate = [np.flatnonzero(self.item_cate == k) for k in range(c.num_cates + 1)]
    self.items_by_cate[0] = np.arange(1, c.num_items + 1)
    for k, ids in enumerate(self.items_by_cate):
      if not len(ids):  # a category without items borrows every item (tiny vocabularies)
        self.items_by_cate[k] = np.arange(1, c.num_items + 1)

  def _draw_items(self, rng, cates: np.ndarray) -> np.ndarray:
    """A random item of each given category."""
    out = np.empty(cates.shape, np.int64)
    for k in np.unique(cates):
      sel = cates == k
      pool = self.items_by_cate[k]
      out[sel] = pool[rng.integers(0, len(pool), int(sel.sum()))]
    return out

  def sample(self, n: int, split: str) -> dict[str, np.ndarray]:
    """``n`` rows of ``split``: cat [n, 3], item/cate histories [n, max_len], label, logit."""
    c = self.config
    rng = np.random.default_rng([c.seed, 1, SPLIT_INDEX[split], n])
    users = rng.integers(1, c.num_users + 1, n)
    favs = np.stack(
      [
        (
          splitmix64(users.astype(np.uint64) * np.uint64(31) + np.uint64(j))
          % np.uint64(c.num_cates)
        ).astype(np.int64)
        + 1
        for j in range(c.favourite_cates)
      ],
      axis=1,
    )
    lens = rng.integers(c.min_len, c.max_len + 1, n)
    L = c.max_len
    fav_pick = favs[np.arange(n)[:, None], rng.integers(0, c.favourite_cates, (n, L))]
    rand_cate = rng.integers(1, c.num_cates + 1, (n, L))
    hist_cate = np.where(rng.random((n, L)) < c.p_favourite, fav_pick, rand_cate)
    hist_item = self._draw_items(rng, hist_cate)
    hist_cate = self.item_cate[hist_item]
    pos = np.arange(L)[None, :]
    real = pos >= L - lens[:, None]  # pre-padding: the newest behaviour is the last column
    t_fav = favs[np.arange(n), rng.integers(0, c.favourite_cates, n)]
    t_cate = np.where(rng.random(n) < c.p_favourite / 2, t_fav, rng.integers(1, c.num_cates + 1, n))
    item = self._draw_items(rng, t_cate)
    cate = self.item_cate[item]
    age = (L - 1 - pos).astype(np.float64)
    w = np.exp(-age / c.recency) * real
    w = w / w.sum(axis=1, keepdims=True)
    cat_term = ((hist_cate == cate[:, None]) * w).sum(axis=1)
    co = self.co_table[self.item_group[item][:, None], self.item_group[hist_item]] * real
    co_term = co.sum(axis=1) / np.sqrt(lens)
    logit = c.bias + c.s_first * self.first[item] + c.s_cat * cat_term + c.s_co * co_term
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    pad = lambda a: np.where(real, a, sequences.PAD).astype(np.int32)
    return {
      "label": label,
      "cat": np.stack([users, item, cate], axis=1).astype(np.int32),
      "num": np.zeros((n, 0), np.float32),
      "item_history": pad(hist_item),
      "cate_history": pad(hist_cate),
      "logit": logit,
    }

  def features(self, pooling: str = "sum"):
    """FeatureSpecs of the generated columns (histories share the target fields' tables)."""
    c = self.config
    cols = [
      sequences.SequenceColumn("item_history", max_len=c.max_len, share_embedding="item_id"),
      sequences.SequenceColumn("cate_history", max_len=c.max_len, share_embedding="cate_id"),
    ]
    cols = [dataclasses.replace(col, pooling=pooling) for col in cols]
    sizes = {"user_id": c.num_users + 1, "item_id": c.num_items + 1, "cate_id": c.num_cates + 1}
    return sequences.features(CATEGORICAL, cols, sizes)


def oracle_auc(data: dict[str, np.ndarray]) -> float:
  """AUC of the planted logit (the best any model can do in expectation)."""
  return auc(data["label"], data["logit"])


def in_memory(
  config: BehaviourConfig = BehaviourConfig(),
  sizes: tuple[int, int, int] = (40_000, 8_000, 8_000),
  name: str = "synthetic_behaviour",
):
  """The synthetic behaviour data as an in-memory `PreparedDataset` (tests, benchmarks)."""
  gen = BehaviourGenerator(config)
  splits, oracle = {}, {}
  for split, n in zip(("train", "valid", "test"), sizes, strict=True):
    d = gen.sample(n, split)
    oracle[split] = oracle_auc(d) if n else math.nan
    splits[split] = {k: v for k, v in d.items() if k != "logit"}
  return memory.from_arrays(name, splits, gen.features(), oracle_auc=oracle)
