"""Interaction search: the planted-interaction data, AutoFIS and OptInter end to end."""

import numpy as np
import pytest

from jaxctr.data import synthetic


def test_planted_pairs_have_their_kind_and_no_first_order_leak():
  gen = synthetic.SyntheticGenerator(synthetic.planted(s_first=0.0))
  truth = gen.planted_truth()
  assert len(truth["lowrank"]) == 3 and len(truth["cross"]) == 3
  assert not {tuple(p) for p in truth["lowrank"]} & {tuple(p) for p in truth["cross"]}
  for f, h in truth["cross"]:  # full rank: far above the latent rank a factorization uses
    t = gen.cross[(f, h)][1:, 1:]
    s = np.linalg.svd(t, compute_uv=False)
    assert np.sum(s > 0.1 * s[0]) > 2 * gen.config.latent_k
  d = gen.sample(40_000, "train")
  centred = d["logit"] - d["logit"].mean()
  for f in range(gen.config.num_categorical):  # each field alone explains ~nothing
    ids = d["cat"][:, f]
    means = np.bincount(ids, centred) / np.maximum(np.bincount(ids), 1)
    assert np.var(means[ids]) < 0.05 * np.var(centred), f
  assert synthetic.oracle_auc(d) > 0.8


def test_planted_needs_enough_fields():
  with pytest.raises(ValueError, match="planted pairs"):
    synthetic.SyntheticGenerator(synthetic.planted(num_categorical=4, num_cross_pairs=3))
