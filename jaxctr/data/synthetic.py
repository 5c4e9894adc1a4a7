"""Deterministic synthetic Criteo-shaped CTR data with a planted logistic model.

Data model (numpy only, a pure function of `(config, split, row range)`):

* `num_numeric` count features: a latent `g ~ N(mu_j, sd_j)` per feature and a raw
  Criteo-style non-negative count `floor(exp(g))`. The planted model sees the
  standardised `log1p(raw)` (standardised with fixed statistics of a reference sample).
* `num_categorical` fields, each with its own vocabulary size. Ids follow a Zipf law
  (exponent `zipf_s`) over popularity ranks; ranks are scattered over `[1, vocab_f]` with
  a per-field affine bijection so hot ids are not all at the start of a table. Id 0 is never
  generated (it is the OOV id of prepared data).
* Label ~ Bernoulli(sigmoid(logit)) with
  `logit = bias + numeric part + sum_f w_f(id_f) + sum_{(f,g) in pairs} <v_f(id_f), v_g(id_g)>`.
  Per-(field, id) weights and latent vectors come from a counter-based hash (splitmix64) of
  `(seed, field, id, salt)`, so every split sees the same true weights. They are centred under
  the field's id distribution: otherwise a pairwise term would leak a first-order signal and
  `pairwise_only=True` would not leave first-order models at AUC ~0.5.

The Bayes-optimal ("oracle") AUC of a split is the AUC of its planted logit (`oracle_auc`).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from jaxctr.metrics import auc

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
# Rows are generated in fixed blocks, each with its own random stream, so that any row range
# of a split can be regenerated without generating what comes before it.
BLOCK_ROWS = 65536
SPLIT_INDEX = {"train": 0, "valid": 1, "test": 2}


def splitmix64(x) -> np.ndarray:
  """Vectorised splitmix64 finaliser (a bijection on uint64)."""
  x = np.asarray(x, dtype=np.uint64)
  with np.errstate(over="ignore"):
    z = x + _GOLDEN
    z = (z ^ (z >> _U64(30))) * _M1
    z = (z ^ (z >> _U64(27))) * _M2
    return z ^ (z >> _U64(31))


def _key(seed: int, field: int, salt: int) -> np.uint64:
  return splitmix64(np.array([((seed * 1_000_003 + field) * 1009 + salt) % (1 << 64)], np.uint64))[
    0
  ]


def hash_unit(ids: np.ndarray, seed: int, field: int, salt: int) -> np.ndarray:
  """Deterministic zero-mean, unit-variance value per id (uniform on [-sqrt3, sqrt3])."""
  h = splitmix64(np.asarray(ids).astype(np.uint64) ^ _key(seed, field, salt))
  u = (h >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))
  return (u * 2.0 - 1.0) * math.sqrt(3.0)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """Shape and signal of the synthetic data.

  Attributes:
    num_numeric: Number of numeric (count) features.
    num_categorical: Number of categorical fields.
    vocab_sizes: Per-field vocabulary sizes; if None they are spread geometrically between
      `min_vocab` and `max_vocab` (in a seeded random field order).
    min_vocab, max_vocab: Range of the default vocabulary sizes.
    zipf_s: Zipf exponent of the id popularity.
    seed: Seed of everything.
    latent_k: Rank of the planted pairwise interactions.
    num_pairs: Number of interacting field pairs (`interaction="pairs"`).
    interaction: `pairs`: `num_pairs` random field pairs, each with its own weight; or
      `field_group`: every pair among `num_interacting` random fields interacts through
      the fields' shared latent vectors (exactly the structure an FM can represent, so the
      oracle is approachable by the FM family).
    num_interacting: Size of the interacting field group (`interaction="field_group"`).
    s_numeric: Standard deviation of the numeric part of the logit.
    s_first: Standard deviation of the first-order categorical part.
    s_pair: Standard deviation of the pairwise part.
    bias: Logit bias (gives CTR ~0.25 with the default strengths).
    pairwise_only: Labels depend only on the pairwise interactions (no first-order, no
      numeric signal), so first-order models stay near AUC 0.5.
    drift: Fraction of categorical draws from new ids (see `id_spaces`); 0: none.
    drift_start: First training row with new ids (rows before it have none).
    num_lowrank_pairs: `interaction="planted"`: pairs among the larger-vocabulary half of
      the fields with a rank-`latent_k` (factorizable) effect `<v_f(id_f), v_g(id_g)>`.
    num_cross_pairs: `interaction="planted"`: pairs among the smaller-vocabulary half with a
      full-rank cross-product effect `W_fg[id_f, id_g]` (an independent hashed value per id
      pair, centred so it carries no first-order signal): only memorizing the pair learns it.
      Every other pair is null. `planted_truth()` names the three kinds.
  """

  num_numeric: int = 13
  num_categorical: int = 26
  vocab_sizes: tuple[int, ...] | None = None
  min_vocab: int = 10
  max_vocab: int = 2000
  zipf_s: float = 1.1
  seed: int = 2024
  latent_k: int = 4
  num_pairs: int = 20
  interaction: str = "pairs"
  num_interacting: int = 8
  s_numeric: float = 0.6
  s_first: float = 1.0
  s_pair: float = 1.0
  bias: float = -1.45
  pairwise_only: bool = False
  # Id drift (`drift_ids`): a `drift` fraction of the draws of every field comes from v new
  # ids (v+1..2v, same popularity law, their own planted weights) in training rows from
  # `drift_start` on and in all validation and test rows; 0 leaves the data unchanged.
  drift: float = 0.0
  drift_start: int = 0
  num_lowrank_pairs: int = 3
  num_cross_pairs: int = 3

  def resolved_vocab_sizes(self) -> tuple[int, ...]:
    if self.vocab_sizes is not None:
      if len(self.vocab_sizes) != self.num_categorical:
        raise ValueError(
          f"vocab_sizes has {len(self.vocab_sizes)} entries, expected {self.num_categorical}"
        )
      return tuple(int(v) for v in self.vocab_sizes)
    sizes = np.round(np.geomspace(self.min_vocab, self.max_vocab, self.num_categorical)).astype(int)
    np.random.default_rng([self.seed, 11]).shuffle(sizes)
    return tuple(int(v) for v in sizes)


def numeric_heavy(**overrides) -> SyntheticConfig:
  """A config whose signal is mostly in the numeric features."""
  kw = dict(s_numeric=1.4, s_first=0.4, s_pair=0.4, bias=-1.5)
  kw.update(overrides)
  return SyntheticConfig(**kw)


def planted(**overrides) -> SyntheticConfig:
  """Ten fields, no numeric features: 3 low-rank, 3 cross-product and 39 null pairs."""
  kw = dict(
    interaction="planted",
    num_numeric=0,
    num_categorical=10,
    min_vocab=12,
    max_vocab=200,
    zipf_s=0.8,
    latent_k=4,
    s_first=0.6,
    s_pair=0.9,
    bias=-1.0,
  )
  kw.update(overrides)
  return SyntheticConfig(**kw)


class SyntheticGenerator:
  """Generator bound to a config; construction costs O(sum of vocab sizes)."""

  def __init__(self, config: SyntheticConfig = SyntheticConfig()):
    self.config = cfg = config
    self.vocab_sizes = cfg.resolved_vocab_sizes()
    rng = np.random.default_rng([cfg.seed, 0])
    nf, nn, k = cfg.num_categorical, cfg.num_numeric, cfg.latent_k
    s_first = 0.0 if cfg.pairwise_only else cfg.s_first
    s_num = 0.0 if cfg.pairwise_only else cfg.s_numeric
    self.cdfs, self.ids_by_rank = [], []
    for v in self.vocab_sizes:
      w = np.arange(1, v + 1, dtype=np.float64) ** (-cfg.zipf_s)
      cdf = np.cumsum(w)
      self.cdfs.append(cdf / cdf[-1])
      while True:
        a = int(rng.integers(1, max(2, v)))
        if math.gcd(a, v) == 1:
          break
      b = int(rng.integers(0, v))
      self.ids_by_rank.append((np.arange(v, dtype=np.int64) * a + b) % v + 1)
    # Numeric distributions and planted weights.
    self.mu = rng.uniform(0.0, 4.0, nn)
    self.sd = rng.uniform(0.5, 2.0, nn)
    ref = np.log1p(np.floor(np.exp(rng.normal(size=(65536, nn)) * self.sd + self.mu)))
    self.num_mean, self.num_std = ref.mean(0), ref.std(0) + 1e-6
    wn = rng.normal(size=nn)
    self.w_num = wn / max(np.linalg.norm(wn), 1e-12) * s_num * math.sqrt(0.8)
    self.w_num_pair = s_num * math.sqrt(0.2) if nn >= 2 else 0.0
    alpha = rng.uniform(0.2, 1.0, nf)
    self.alpha = alpha / max(np.linalg.norm(alpha), 1e-12) * s_first
    self.cross_pairs = []
    if cfg.interaction == "field_group":
      group = sorted(int(f) for f in rng.choice(nf, min(cfg.num_interacting, nf), replace=False))
      self.pairs = [(a, b) for i, a in enumerate(group) for b in group[i + 1 :]]
      beta = np.ones(len(self.pairs))
    elif cfg.interaction == "pairs":
      all_pairs = [(i, j) for i in range(nf) for j in range(i + 1, nf)]
      n_pairs = min(cfg.num_pairs, len(all_pairs))
      sel = rng.choice(len(all_pairs), size=n_pairs, replace=False) if n_pairs else []
      self.pairs = [all_pairs[int(i)] for i in sel]
      beta = rng.uniform(0.3, 1.0, n_pairs)
    elif cfg.interaction == "planted":
      self.pairs, self.cross_pairs = _planted_pairs(cfg, self.vocab_sizes, rng)
      beta = np.ones(len(self.pairs))
    else:
      raise ValueError(
        "SyntheticConfig.interaction must be 'pairs', 'field_group' or 'planted', got "
        f"{cfg.interaction!r}"
      )
    if cfg.interaction == "planted":  # every planted pair with the same strength s_pair
      self.beta = beta * cfg.s_pair
    else:
      self.beta = beta / max(np.linalg.norm(beta), 1e-12) * cfg.s_pair
    # Per-id tables computed from the hash (cheap for modest vocabularies), centred under the
    # field's Zipf distribution; index 0 (OOV) is unused.
    self.first, self.latent = [], {}
    need = {f for p in self.pairs for f in p}
    if not 0.0 <= cfg.drift <= 1.0:
      raise ValueError(f"SyntheticConfig.drift must be in [0, 1], got {cfg.drift}")
    self.id_spaces = tuple(v * (2 if cfg.drift else 1) for v in self.vocab_sizes)
    for f, v in enumerate(self.vocab_sizes):
      ids = np.arange(self.id_spaces[f] + 1)
      w = hash_unit(ids, cfg.seed, f, 1)
      lat = np.stack([hash_unit(ids, cfg.seed, f, 2 + j) for j in range(k)], axis=1)
      first, latent = np.zeros_like(w), np.zeros_like(lat)
      for shift in range(0, self.id_spaces[f], v):  # old ids, then new ids (drift)
        p = np.zeros(len(ids))
        p[self.ids_by_rank[f] + shift] = np.diff(self.cdfs[f], prepend=0.0)
        part = p > 0
        first[part] = self.alpha[f] * (w - p @ w)[part]
        latent[part] = (lat - p @ lat)[part]
      self.first.append(first)
      if f in need:
        self.latent[f] = latent
    self.cross = {}
    if self.cross_pairs and cfg.drift:  # cross tables cover the original ids only
      raise ValueError("SyntheticConfig: interaction='planted' does not combine with drift > 0")
    for f, h in self.cross_pairs:
      self.cross[(f, h)] = self._cross_table(f, h)

  def _field_probs(self, f: int) -> np.ndarray:
    p = np.zeros(self.vocab_sizes[f] + 1)
    p[self.ids_by_rank[f]] = np.diff(self.cdfs[f], prepend=0.0)
    return p

  def _cross_table(self, f: int, h: int) -> np.ndarray:
    """[vocab_f + 1, vocab_h + 1] full-rank effect, double-centred, unit variance."""
    vf, vh = self.vocab_sizes[f], self.vocab_sizes[h]
    key = np.arange(vf + 1)[:, None] * (vh + 1) + np.arange(vh + 1)[None, :]
    w = hash_unit(key, self.config.seed, f * 4099 + h, 77)
    pf, ph = self._field_probs(f), self._field_probs(h)
    # Double centring under the id distributions: no first-order leak into either field.
    w = w - (w @ ph)[:, None]
    w = w - (pf @ w)[None, :]
    return w / math.sqrt(max(float(pf @ (w * w) @ ph), 1e-12))

  def planted_truth(self) -> dict[str, list[list[int]]]:
    """`{"lowrank": [[f, g], ...], "cross": [...]}` (0-based field indices, f < g)."""
    if self.config.interaction != "planted":
      raise ValueError("planted_truth() needs SyntheticConfig.interaction='planted'")
    return {
      "lowrank": [list(p) for p in self.pairs],
      "cross": [list(p) for p in self.cross_pairs],
    }

  def _block(self, split: int, block: int, rows: int) -> dict[str, np.ndarray]:
    cfg = self.config
    rng = np.random.default_rng([cfg.seed, 1, split, block])
    g = rng.normal(size=(rows, cfg.num_numeric)) * self.sd + self.mu
    raw = np.floor(np.exp(g))
    z = (np.log1p(raw) - self.num_mean) / self.num_std
    logit = cfg.bias + z @ self.w_num
    if self.w_num_pair:
      logit += self.w_num_pair * z[:, 0] * z[:, 1]
    u = rng.random((rows, cfg.num_categorical))
    cat = np.empty((rows, cfg.num_categorical), np.int32)
    new = None
    if cfg.drift:  # its own stream: data without drift stays bit-identical
      first_row = block * BLOCK_ROWS
      on = np.arange(first_row, first_row + rows) >= (cfg.drift_start if split == 0 else 0)
      d_rng = np.random.default_rng([cfg.seed, 3, split, block])
      new = on[:, None] & (d_rng.random((rows, cfg.num_categorical)) < cfg.drift)
    for f, v in enumerate(self.vocab_sizes):
      rank = np.minimum(np.searchsorted(self.cdfs[f], u[:, f], side="right"), v - 1)
      cat[:, f] = self.ids_by_rank[f][rank]
      if new is not None:
        cat[:, f] += v * new[:, f]
      logit += self.first[f][cat[:, f]]
    for (f, h), bt in zip(self.pairs, self.beta, strict=True):
      dot = np.einsum("nk,nk->n", self.latent[f][cat[:, f]], self.latent[h][cat[:, h]])
      logit += bt * dot / math.sqrt(cfg.latent_k)
    for (f, h), table in self.cross.items():
      logit += cfg.s_pair * table[cat[:, f], cat[:, h]]
    label = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return {
      "label": label.astype(np.float32),
      "cat": cat,
      "num": raw.astype(np.float32),
      "logit": logit.astype(np.float32),
    }

  def sample(self, n: int, split: str | int = "train", start: int = 0) -> dict[str, np.ndarray]:
    """Rows `[start, start + n)` of a split.

    Returns:
      `label` float32 [n], `cat` int32 [n, F] in [1, vocab_f] ([1, 2 vocab_f] with drift), `num` float32 [n, N] raw
      non-negative counts, `logit` float32 [n] (the planted oracle logit).
    """
    split = SPLIT_INDEX[split] if isinstance(split, str) else int(split)
    parts = []
    b0, b1 = start // BLOCK_ROWS, (start + n + BLOCK_ROWS - 1) // BLOCK_ROWS
    for b in range(b0, b1):
      blk = self._block(split, b, BLOCK_ROWS)
      lo = max(start - b * BLOCK_ROWS, 0)
      hi = min(start + n - b * BLOCK_ROWS, BLOCK_ROWS)
      parts.append({k: a[lo:hi] for k, a in blk.items()})
    if not parts:
      return self._block(split, 0, 0)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

  def hex_tokens(self, ids: np.ndarray, field: int) -> np.ndarray:
    """Criteo-style 8-hex-digit token (numpy `S8`) for each id of a field."""
    h = splitmix64(np.asarray(ids).astype(np.uint64) ^ _key(self.config.seed, field, 999))
    h32 = (h >> _U64(32)).astype(np.uint32)
    shifts = np.arange(28, -4, -4, dtype=np.uint32)
    nib = ((h32[:, None] >> shifts) & np.uint32(0xF)).astype(np.uint8)
    lut = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    return np.ascontiguousarray(lut[nib]).view("S8").reshape(-1)


def _planted_pairs(cfg: SyntheticConfig, vocab_sizes, rng) -> tuple[list, list]:
  """Low-rank pairs among the larger-vocabulary fields, cross pairs among the smaller ones.

  Memorizing a pair needs examples of each id pair, which small vocabularies give; a
  factorized pair generalises across id pairs, which large vocabularies need.
  """
  order = np.argsort(np.asarray(vocab_sizes), kind="stable")
  half = len(order) // 2
  small, large = sorted(int(f) for f in order[:half]), sorted(int(f) for f in order[half:])

  def pick(fields, n):
    cand = [(a, b) for i, a in enumerate(fields) for b in fields[i + 1 :]]
    if n > len(cand):
      raise ValueError(
        f"SyntheticConfig: {n} planted pairs requested among {len(fields)} fields "
        f"({len(cand)} pairs); use more num_categorical"
      )
    return sorted(cand[int(i)] for i in rng.choice(len(cand), size=n, replace=False))

  return pick(large, cfg.num_lowrank_pairs), pick(small, cfg.num_cross_pairs)


def oracle_auc(data: dict[str, np.ndarray]) -> float:
  """AUC of the planted logit on sampled data (the Bayes-optimal ranking)."""
  return auc(data["label"], data["logit"])


def write_criteo_tsv(
  path: str | os.PathLike,
  gen: SyntheticGenerator,
  data: dict[str, np.ndarray],
  *,
  missing_rate: float = 0.0,
  with_label: bool = True,
  seed: int = 7,
  chunk: int = 100_000,
) -> int:
  """Writes sampled rows as Criteo TSV (label, I1.., C1..); returns bytes written.

  `missing_rate > 0` blanks that fraction of the numeric and categorical cells
  (deterministically from `seed`); `data` itself is not changed.
  """
  n, nf = data["cat"].shape
  rng = np.random.default_rng([gen.config.seed, seed])
  nbytes = 0
  with open(path, "wb") as fh:
    for lo in range(0, n, chunk):
      hi = min(n, lo + chunk)
      cols = [data["label"][lo:hi].astype(np.int64).astype("S1")] if with_label else []
      for j in range(data["num"].shape[1]):
        c = data["num"][lo:hi, j].astype(np.int64).astype("S20")
        if missing_rate > 0:
          c[rng.random(hi - lo) < missing_rate] = b""
        cols.append(c)
      for f in range(nf):
        c = gen.hex_tokens(data["cat"][lo:hi, f], f).astype("S8")
        if missing_rate > 0:
          c[rng.random(hi - lo) < missing_rate] = b""
        cols.append(c)
      text = (
        b"\n".join(b"\t".join(row) for row in zip(*[c.tolist() for c in cols], strict=True)) + b"\n"
      )
      fh.write(text)
      nbytes += len(text)
  return nbytes
