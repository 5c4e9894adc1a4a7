"""Synthetic generator: determinism, shapes, planted signal."""

import numpy as np

from jaxctr.data import synthetic
from jaxctr.data.parsers import parse_criteo

SMALL = synthetic.SyntheticConfig(
  num_categorical=6, num_numeric=4, max_vocab=50, num_pairs=6, seed=5
)


def test_deterministic_and_range_consistent():
  g1, g2 = synthetic.SyntheticGenerator(SMALL), synthetic.SyntheticGenerator(SMALL)
  a, b = g1.sample(70_000, "train"), g2.sample(70_000, "train")
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  part = g1.sample(1000, "train", start=65_000)  # crosses a block boundary
  np.testing.assert_array_equal(part["cat"], a["cat"][65_000:66_000])
  np.testing.assert_array_equal(part["logit"], a["logit"][65_000:66_000])
  other = g1.sample(1000, "valid")
  assert not np.array_equal(other["cat"], a["cat"][:1000])


def test_shapes_dtypes_and_id_range():
  g = synthetic.SyntheticGenerator(SMALL)
  d = g.sample(5000)
  assert d["label"].dtype == np.float32 and d["label"].shape == (5000,)
  assert d["cat"].dtype == np.int32 and d["cat"].shape == (5000, 6)
  assert d["num"].dtype == np.float32 and d["num"].shape == (5000, 4)
  assert (d["num"] >= 0).all() and (d["num"] == np.floor(d["num"])).all()
  vs = np.array(g.vocab_sizes)
  assert (d["cat"] >= 1).all() and (d["cat"] <= vs).all()
  assert vs.min() == 10 and vs.max() == 50
  # Zipf long tail: the most frequent id of the widest field is much more common than average.
  f = int(np.argmax(vs))
  counts = np.bincount(d["cat"][:, f])
  assert counts.max() > 5 * counts[counts > 0].mean()


def test_default_signal_strength():
  g = synthetic.SyntheticGenerator()
  d = g.sample(200_000, "valid")
  assert 0.77 <= synthetic.oracle_auc(d) <= 0.83
  assert 0.22 <= d["label"].mean() <= 0.29


def _first_order_auc(train, test):
  """AUC of a naive-Bayes-style first-order model: sum of per-(field, id) log-odds."""
  score = np.zeros(len(test["label"]))
  y = train["label"]
  for f in range(train["cat"].shape[1]):
    v = int(max(train["cat"][:, f].max(), test["cat"][:, f].max())) + 1
    pos = np.bincount(train["cat"][:, f], weights=y, minlength=v) + 1.0
    tot = np.bincount(train["cat"][:, f], minlength=v) + 2.0
    p = pos / tot
    score += np.log(p / (1 - p))[test["cat"][:, f]]
  return synthetic.auc(test["label"], score)


def test_pairwise_only_has_no_first_order_signal():
  cfg = synthetic.SyntheticConfig(
    num_categorical=8, num_numeric=2, max_vocab=30, num_pairs=8, s_pair=2.0
  )
  pw = synthetic.SyntheticGenerator(
    synthetic.SyntheticConfig(**{**cfg.__dict__, "pairwise_only": True})
  )
  full = synthetic.SyntheticGenerator(cfg)
  tr, te = pw.sample(100_000, "train"), pw.sample(50_000, "test")
  assert synthetic.oracle_auc(te) > 0.65  # the signal is there ...
  # ... but not first-order: the logit's mean given any one field's id is (nearly) constant,
  # so a first-order model only picks up the weak variance effect of the sigmoid.
  for f in range(8):
    ids = tr["cat"][:, f]
    cnt = np.bincount(ids)
    mean_by_id = np.bincount(ids, weights=tr["logit"]) / np.maximum(cnt, 1)
    between = np.average((mean_by_id[cnt > 0] - tr["logit"].mean()) ** 2, weights=cnt[cnt > 0])
    assert between < 0.05 * tr["logit"].var()
  assert abs(_first_order_auc(tr, te) - 0.5) < 0.05
  tr, te = full.sample(100_000, "train"), full.sample(50_000, "test")
  assert _first_order_auc(tr, te) > 0.6
  # Numeric values carry no signal either: logit is uncorrelated with them.
  corr = np.corrcoef(np.log1p(pw.sample(50_000)["num"][:, 0]), pw.sample(50_000)["logit"])[0, 1]
  assert abs(corr) < 0.02


def test_numeric_heavy_puts_signal_in_numbers():
  g = synthetic.SyntheticGenerator(synthetic.numeric_heavy(num_categorical=4, max_vocab=20))
  d = g.sample(50_000)
  x = (np.log1p(d["num"]) - g.num_mean) / g.num_std
  r2 = 1 - np.var(
    d["logit"]
    - np.c_[x, np.ones(len(x))]
    @ np.linalg.lstsq(np.c_[x, np.ones(len(x))], d["logit"], rcond=None)[0]
  ) / np.var(d["logit"])
  assert r2 > 0.5


def test_auc_matches_pairwise_definition():
  rng = np.random.default_rng(0)
  y = rng.random(300) < 0.3
  s = np.round(rng.normal(size=300), 1)  # ties
  pos, neg = s[y], s[~y]
  ref = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
    len(pos) * len(neg)
  )
  assert abs(synthetic.auc(y, s) - ref) < 1e-12


def test_criteo_tsv_round_trip(tmp_path):
  g = synthetic.SyntheticGenerator(synthetic.SyntheticConfig(num_categorical=26, num_numeric=13))
  d = g.sample(3000)
  path = tmp_path / "t.tsv"
  synthetic.write_criteo_tsv(path, g, d, missing_rate=0.1)
  chunks = list(parse_criteo(path))
  label = np.concatenate([c.label for c in chunks])
  num = np.concatenate([c.num for c in chunks])
  cat = np.concatenate([c.cat for c in chunks])
  np.testing.assert_array_equal(label, d["label"])
  blank = np.isnan(num)
  assert 0.07 < blank.mean() < 0.13
  np.testing.assert_array_equal(num[~blank], d["num"][~blank])
  tok = g.hex_tokens(d["cat"][:, 3], 3)
  present = cat[:, 3] != -1
  np.testing.assert_array_equal(cat[present, 3], [int(t, 16) for t in tok[present]])
