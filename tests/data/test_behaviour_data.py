"""Behaviour data: sequence columns, pooling, the synthetic generator and the real formats."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxctr.data import behaviour, behaviour_builders, builders, sequences
from jaxctr.data.parsers import DataError
from jaxctr.embeddings import encoders
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import CATEGORICAL, SEQUENCE, FeatureSpec, TableSpec

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def test_pad_and_truncate():
  seqs = [np.array([1, 2, 3, 4]), np.array([5]), np.array([], int)]
  pre = sequences.pad_sequences(seqs, 3, "pre", "pre")
  np.testing.assert_array_equal(pre, [[2, 3, 4], [-1, -1, 5], [-1, -1, -1]])
  post = sequences.pad_sequences(seqs, 3, "post", "post")
  np.testing.assert_array_equal(post, [[1, 2, 3], [5, -1, -1], [-1, -1, -1]])
  np.testing.assert_array_equal(sequences.mask(pre)[1], [0, 0, 1])
  with pytest.raises(DataError, match="padding"):
    sequences.SequenceColumn("h", padding="middle")
  assert sequences.split_tokens("a^b^^c", "^") == ["a", "b", "c"]
  assert sequences.split_tokens("", "^") == []


def test_token_vocabulary():
  v = sequences.TokenVocabulary(["b", "a", "b", "c", "c", "c"], min_count=2)
  assert v.size == 3  # c, b + OOV
  np.testing.assert_array_equal(v.encode(np.array(["c", "b", "a", "zz"])), [1, 2, 0, 0])


@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "none"])
def test_sequence_pooling_and_shared_table(pooling):
  """item_history reads item_id's table; pooled values match numpy over real positions."""
  feats = [
    FeatureSpec("item_id", CATEGORICAL, vocab_size=6),
    FeatureSpec(
      "item_history", SEQUENCE, vocab_size=6, max_len=4, pooling=pooling, table="item_id"
    ),
  ]
  coll = EmbeddingCollection(feats, [TableSpec("item_id", 6, 3, init_std=1.0)])
  assert len(coll.stacks) == 1 and coll.stacks[0].rows == 6  # one shared table
  state = coll.init(jax.random.key(0))
  table = np.asarray(state[coll.stacks[0].name]["table"])
  hist = np.array([[-1, 2, 5, 2], [-1, -1, -1, -1], [1, 1, 3, 4]], np.int32)
  batch = {"cat": np.array([[2], [0], [4]], np.int32), "item_history": hist}
  ids = coll.prepare(batch)
  out = coll.assemble(coll.gather(state, ids), ids)
  np.testing.assert_allclose(np.asarray(out["item_id"]), table[[2, 0, 4]], rtol=1e-6)
  for b in range(3):
    rows = table[hist[b][hist[b] >= 0]]
    if pooling == "none":
      got = np.asarray(out["item_history"][b])
      np.testing.assert_array_equal(np.asarray(out["item_history/mask"][b]), hist[b] >= 0)
      np.testing.assert_allclose(got[hist[b] >= 0], rows, rtol=1e-6)
      assert not got[hist[b] < 0].any()
      continue
    want = {
      "sum": rows.sum(0) if len(rows) else np.zeros(3),
      "mean": rows.mean(0) if len(rows) else np.zeros(3),
      "max": rows.max(0) if len(rows) else np.zeros(3),
    }[pooling]
    np.testing.assert_allclose(np.asarray(out["item_history"][b]), want, rtol=1e-5, atol=1e-6)


def test_max_pool_ignores_padding_with_negative_values():
  v = jnp.array([[[-2.0, -1.0], [0.0, 0.0]]])
  np.testing.assert_allclose(encoders.pool(v, jnp.array([[1.0, 0.0]]), "max"), [[-2.0, -1.0]])


def test_synthetic_behaviour_generator():
  cfg = behaviour.BehaviourConfig(num_items=200, num_cates=10, min_len=3, max_len=30)
  gen = behaviour.BehaviourGenerator(cfg)
  a, b = gen.sample(4000, "train"), gen.sample(4000, "train")
  np.testing.assert_array_equal(a["item_history"], b["item_history"])  # deterministic
  hist = a["item_history"]
  lens = (hist >= 0).sum(1)
  assert lens.min() >= 3 and lens.max() <= 30
  # pre-padding: once a row starts, it stays real; categories follow the items
  real = hist >= 0
  assert (np.diff(real.astype(int), axis=1) >= 0).all()
  np.testing.assert_array_equal(a["cate_history"][real], gen.item_cate[hist[real]])
  np.testing.assert_array_equal(a["cat"][:, 2], gen.item_cate[a["cat"][:, 1]])
  assert 0.75 < behaviour.oracle_auc(a) < 0.95
  # the label depends on same-category history behaviours
  same = (a["cate_history"] == a["cat"][:, 2:3]).sum(1)
  assert (
    a["label"][same > np.median(same)].mean() > a["label"][same <= np.median(same)].mean() + 0.1
  )
  feats = {f.name: f for f in gen.features()}
  assert feats["item_history"].table_name == "item_id" and feats["item_history"].max_len == 30


def test_long_histories():
  gen = behaviour.BehaviourGenerator(behaviour.BehaviourConfig(min_len=9000, max_len=10_000))
  d = gen.sample(8, "test")
  assert d["item_history"].shape == (8, 10_000) and ((d["item_history"] >= 0).sum(1) >= 9000).all()


def test_bars_builder_reads_the_csv_format(tmp_path):
  cfg = behaviour_builders.BehaviourBuilderConfig(
    name="fixture", sequences=behaviour_builders._with_len(4), valid_fraction=0.25, chunk_rows=3
  )
  ds = builders.load_dataset(
    "bars_behaviour",
    str(tmp_path),
    manual_dir=os.path.join(FIXTURES, "bars_behaviour"),
    builder_kwargs={"config": cfg},
  )
  info = ds.info
  assert info.num_examples["test"] == 2
  assert info.num_examples["train"] + info.num_examples["valid"] == 8
  names = [f.name for f in info.features]
  assert names == ["user_id", "item_id", "cate_id", "item_history", "cate_history"]
  by = {f.name: f for f in info.features}
  assert by["item_history"].table_name == "item_id" and by["item_history"].max_len == 4
  test = ds.split("test").read_all()
  np.testing.assert_array_equal(test["label"], [1, 0])
  # row 1: item 101 with history 105^102 (both known items); row 2: unseen user/item -> OOV 0
  assert test["cat"][1, 0] == 0 and test["cat"][1, 1] == 0
  h = test["item_history"]
  assert (h[0, :2] == -1).all() and (h[0, 2:] > 0).all()
  assert h[1, 2] == 0 and h[1, 3] > 0  # 888 unseen in train -> OOV, 101 known
  tr = ds.split("train").read_all()
  lens = (tr["item_history"] >= 0).sum(1)
  assert lens.max() == 4  # the 6-long history was truncated to its last 4


def test_bars_builder_reports_bad_rows(tmp_path):
  bad = tmp_path / "raw"
  bad.mkdir()
  (bad / "train.csv").write_text("label,user_id,item_id,cate_id,item_history\n1,u,1,2,3\n")
  (bad / "test.csv").write_text("label,user_id,item_id,cate_id,item_history,cate_history\n")
  with pytest.raises(DataError, match=r"train.csv: header lacks columns \['cate_history'\]"):
    builders.load_dataset("bars_behaviour/taobao_ad", str(tmp_path / "d"), manual_dir=str(bad))


def test_user_behavior_samples_have_no_future_leakage():
  log = behaviour_builders.read_user_behavior(
    os.path.join(FIXTURES, "user_behavior", "UserBehavior.csv")
  )
  user = log["user"].astype(int)
  item = log["item"].astype(int)
  cate = log["category"].astype(int)
  ts = log["timestamp"]
  d = behaviour_builders.behaviour_samples(
    user, item, cate, ts, max_len=3, negatives=2, min_history=1, seed=0
  )
  assert len(d["label"]) % 3 == 0 and d["label"].sum() == len(d["label"]) // 3
  time_of = {(u, i): t for u, i, t in zip(user, item, ts)}
  for k in np.flatnonzero(d["label"] == 1):
    u, target = d["user"][k], d["item"][k]
    t = time_of[(u, target)]
    hist = d["item_history"][k][d["item_history"][k] >= 0]
    assert len(hist) >= 1
    for h in hist:  # strictly earlier behaviours of the same user only
      assert (u, h) in time_of and time_of[(u, h)] < t, (u, target, h)
    want = sorted(
      [i for (uu, i), tt in time_of.items() if uu == u and tt < t], key=lambda i: time_of[(u, i)]
    )
    assert hist.tolist() == want[-3:]
    # negatives share the history, never the positive item
    for j in (1, 2):
      np.testing.assert_array_equal(d["item_history"][k + j], d["item_history"][k])
      assert d["item"][k + j] != target and d["label"][k + j] == 0
  # user 1: item 102 at the same second as 101 -> 101 is not its history
  k = np.flatnonzero((d["user"] == 1) & (d["item"] == 102) & (d["label"] == 1))[0]
  assert d["item_history"][k][d["item_history"][k] >= 0].tolist() == [100]
  # the last target of each user is test, the one before valid
  for u in np.unique(d["user"]):
    pos = np.flatnonzero((d["user"] == u) & (d["label"] == 1))
    splits = d["split"][pos][np.argsort(d["timestamp_rank"][pos], kind="stable")]
    assert splits[-1] == 2 and (len(pos) < 2 or splits[-2] == 1) and (splits[:-2] == 0).all()


def test_user_behavior_builder(tmp_path):
  ds = builders.load_dataset(
    "user_behavior",
    str(tmp_path),
    manual_dir=os.path.join(FIXTURES, "user_behavior"),
  )
  assert ds.info.num_examples["test"] == 3 * 2  # one target per user, 1 negative each
  test = ds.split("test").read_all()
  assert test["item_history"].shape[1] == 50 and set(test["label"]) == {0.0, 1.0}
