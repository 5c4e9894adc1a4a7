"""Exact metrics against brute-force definitions."""

import numpy as np
import pytest

from jaxctr import metrics


def _brute_auc(y, s):
  pos, neg = s[y > 0.5], s[y <= 0.5]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("decimals", [None, 1])
def test_auc_matches_pairwise_definition_with_ties(decimals):
  rng = np.random.default_rng(0)
  y = (rng.random(500) < 0.3).astype(np.float32)
  s = rng.random(500) + 0.4 * y
  if decimals is not None:
    s = np.round(s, decimals)  # many ties
  assert metrics.auc(y, s) == pytest.approx(_brute_auc(y, s), abs=1e-12)


def test_auc_edge_cases():
  assert np.isnan(metrics.auc(np.ones(4), np.arange(4)))
  assert metrics.auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
  assert metrics.auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
  with pytest.raises(ValueError, match="shape"):
    metrics.auc(np.zeros(3), np.zeros(4))


def test_logloss():
  y = np.array([1.0, 0.0, 1.0])
  p = np.array([0.9, 0.2, 0.5])
  want = -np.mean([np.log(0.9), np.log(0.8), np.log(0.5)])
  assert metrics.logloss(y, p) == pytest.approx(want)
  assert np.isfinite(metrics.logloss(np.array([1.0]), np.array([0.0])))  # clipped


def test_group_auc_weights_groups_and_skips_single_class():
  y = np.array([1, 0, 0, 1, 1, 0, 0, 1, 1])
  s = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.6, 0.5, 0.5, 0.5])
  g = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])  # group 2 has one class only: skipped
  a0 = _brute_auc(y[:3], s[:3])
  a1 = _brute_auc(y[3:7], s[3:7])
  assert metrics.group_auc(y, s, g) == pytest.approx((3 * a0 + 4 * a1) / 7)


def test_compute_prefixes():
  m = metrics.compute(
    np.array([0, 1, 1]), np.array([0.2, 0.7, 0.6]), prefix="valid", groups=np.zeros(3)
  )
  assert set(m) == {"valid_auc", "valid_logloss", "valid_examples", "valid_gauc"}
  assert m["valid_examples"] == 3 and m["valid_auc"] == 1.0
