"""A behaviour model (DIN over item and category histories) served from raw BARS rows.

The data is a BARS-format CSV (``label,user_id,item_id,cate_id,item_history,cate_history``,
histories ``^``-joined) written from the synthetic behaviour generator with string tokens,
longer histories than the stored ``max_len`` (truncation), empty histories, tokens seen
once in training (OOV with ``min_count=2``) and history items that training never saw.
DIN trains a few steps; the exported artifact's predictions of the raw test rows (as CSV
text and as JSON token lists, directly and through the HTTP app) equal the trainer's
offline predictions on the prepared test split within 1e-6.
"""

import csv
import json
import os

import numpy as np
import pytest
from starlette.testclient import TestClient

from jaxctr import export, predict, train
from jaxctr.data import behaviour, behaviour_builders, builders
from jaxctr.serving import artifact as art
from jaxctr.serving.app import make_app
from jaxctr.serving.model import ServableModel
from jaxctr.serving.versions import VersionManager
from tests.serving import common

MAX_LEN = 6
BUCKETS = (64,)
HEADER = ["label", "user_id", "item_id", "cate_id", "item_history", "cate_history"]
FEATURES = HEADER[1:]


def _write_bars(path: str, n: int, split: str, seed: int) -> None:
  gen = behaviour.BehaviourGenerator(
    behaviour.BehaviourConfig(num_users=60, num_items=400, num_cates=12, min_len=1, max_len=10)
  )
  d = gen.sample(n, split)
  rng = np.random.default_rng(seed)
  with open(path, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(HEADER)
    for i in range(n):
      u, item, cate = d["cat"][i]
      real = d["item_history"][i] >= 0
      hist = [f"i{x}" for x in d["item_history"][i][real]]
      cates = [f"c{x}" for x in d["cate_history"][i][real]]
      if rng.random() < 0.08:  # no behaviour yet
        hist, cates = [], []
      elif split == "test" and rng.random() < 0.3:  # an item training never saw
        hist[-1] = f"new{i}"
      w.writerow(
        [int(d["label"][i]), f"u{u}", f"i{item}", f"c{cate}", "^".join(hist), "^".join(cates)]
      )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  """(trainer, state, offline test predictions, model dir, raw test rows)."""
  tmp = tmp_path_factory.mktemp("behaviour")
  manual = tmp / "raw"
  manual.mkdir()
  _write_bars(str(manual / "train.csv"), 1200, "train", 0)
  _write_bars(str(manual / "test.csv"), 200, "test", 1)
  bcfg = behaviour_builders.BehaviourBuilderConfig(
    name="serving",
    sequences=behaviour_builders._with_len(MAX_LEN),
    min_count=2,
    valid_fraction=0.2,
    chunk_rows=128,
  )
  ds = builders.load_dataset(
    "bars_behaviour", str(tmp / "data"), manual_dir=str(manual), builder_kwargs={"config": bcfg}
  )
  cfg = common.config(
    "din",
    **{
      "dataset.name": "bars_behaviour",
      "model_config.attention_hidden": (8,),
      "batch_size": 64,
      "total_steps": 4,
      "eval_every_steps": 4,
    },
  )
  workdir = str(tmp / "run")
  train.train_and_evaluate(cfg, workdir, dataset=ds)
  trainer, state, step = export.load_trained(workdir, dataset=ds)
  assert step == 4
  ref, _ = common.offline(trainer, state)
  path = export.export(trainer, state, str(tmp / "models"), step=step)
  with open(manual / "test.csv", newline="") as fh:
    rows = [{k: r[k] for k in FEATURES} for r in csv.DictReader(fh)]
  return ds, ref, path, rows


def test_served_raw_rows_equal_offline(served):
  ds, ref, path, rows = served
  schema = json.load(open(os.path.join(path, art.SCHEMA_FILE)))
  hist = {c["name"]: c for c in schema["sequences"]}["item_history"]
  assert (hist["separator"], hist["max_len"], hist["padding"], hist["truncation"]) == (
    "^",
    MAX_LEN,
    "pre",
    "pre",
  )
  assert hist["share_embedding"] == "item_id"

  model = ServableModel(path, buckets=BUCKETS)
  got = model.predict_instances(rows)
  assert len(got) == len(ref) == len(rows)
  assert np.abs(got - ref).max() <= 1e-6
  assert ref.std() > 1e-4  # predictions vary: the comparison is not between constants

  # The encoded rows are the prepared test split: truncated, padded, unseen items -> OOV 0.
  ids, _ = model.encoder.encode_instances(rows)
  test = ds.split("test").read_all()
  np.testing.assert_array_equal(ids[:, :3], test["cat"])
  np.testing.assert_array_equal(ids[:, 3 : 3 + MAX_LEN], test["item_history"])
  np.testing.assert_array_equal(ids[:, 3 + MAX_LEN :], test["cate_history"])
  empty = [i for i, r in enumerate(rows) if r["item_history"] == ""]
  unseen = [i for i, r in enumerate(rows) if "new" in r["item_history"]]
  long = [i for i, r in enumerate(rows) if r["item_history"].count("^") >= MAX_LEN]
  assert empty and unseen and long
  assert (test["item_history"][empty] == -1).all()
  assert (test["item_history"][unseen, -1] == 0).all()  # the newest behaviour is unseen

  # JSON lists of raw tokens (and null for no history) encode like the joined text.
  as_lists = [
    {
      **r,
      "item_history": r["item_history"].split("^") if r["item_history"] else None,
      "cate_history": r["cate_history"].split("^") if r["cate_history"] else [],
    }
    for r in rows
  ]
  np.testing.assert_array_equal(model.predict_instances(as_lists), got)
  cols = {k: [r[k] for r in as_lists[:10]] for k in FEATURES}
  np.testing.assert_allclose(model.predict_columns(cols), got[:10], atol=1e-6, rtol=0)
  # The history matters: the same rows without it predict something else.
  blank = [{**r, "item_history": "", "cate_history": ""} for r in rows]
  assert np.abs(model.predict_instances(blank) - got).max() > 1e-4


def test_batch_scoring_of_a_bars_csv(served, tmp_path):
  """`jaxctr.predict` reads the raw CSV by its header (any column order, extra columns)."""
  _, ref, path, rows = served
  raw = tmp_path / "test.csv"
  cols = ["cate_history", "extra", "item_id", "label", "user_id", "item_history", "cate_id"]
  with open(raw, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(cols)
    for r in rows:
      w.writerow([{"extra": "x", "label": "1"}.get(c) or r[c] for c in cols])
  out = tmp_path / "p.npy"
  n = predict.score_file(os.path.dirname(path), str(raw), str(out), batch_size=64, progress=False)
  assert n == len(rows)
  assert np.abs(np.load(out) - ref).max() <= 1e-6
  with open(raw, "a") as fh:
    fh.write("a,b\n")
  with pytest.raises(ValueError, match=rf"test.csv:{len(rows) + 2}: 2 fields"):
    predict.score_file(os.path.dirname(path), str(raw), str(out), progress=False)


def test_http_predict_of_raw_histories(served):
  _, ref, path, rows = served
  manager = VersionManager(os.path.dirname(path), buckets=BUCKETS, max_batch=64, poll_seconds=0)
  with TestClient(make_app(manager, "din")) as client:
    body = {"instances": [{**r, "item_history": r["item_history"].split("^")} for r in rows[:5]]}
    r = client.post("/v1/models/din:predict", json=body)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"], ref[:5], atol=1e-6, rtol=0)
    meta = client.get("/v1/models/din/metadata").json()
    inputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert sorted(inputs) == sorted(FEATURES)
    bad = {"instances": [{**rows[0], "item_history": 7}]}
    r = client.post("/v1/models/din:predict", json=bad)
    assert r.status_code == 400 and "item_history" in r.json()["error"], r.text


def test_sim_hard_search_reads_raw_ids(served, tmp_path):
  """SIM's hard search keys on the raw category ids: they travel with the served rows."""
  ds, _, _, rows = served
  cfg = common.config(
    "sim",
    **{
      "dataset.name": "bars_behaviour",
      "model_config.search": "hard",
      "model_config.top_k": 3,
      "model_config.short_len": 2,
      "model_config.heads": 1,
    },
  )
  trainer, state = common.checkpointed_run(cfg, ds, str(tmp_path / "run"))
  assert trainer.id_keys  # the model reads raw ids in its forward pass
  ref, _ = common.offline(trainer, state)
  path = export.export(trainer, state, str(tmp_path / "models"))
  schema = json.load(open(os.path.join(path, art.SCHEMA_FILE)))
  assert schema["raw_ids"] == {k: (3 if k == "cat" else MAX_LEN) for k in trainer.id_keys}
  got = ServableModel(path, buckets=BUCKETS).predict_instances(rows)
  assert np.abs(got - ref).max() <= 1e-6 and ref.std() > 1e-4


def test_export_refuses_histories_without_vocabularies(tmp_path):
  """An in-memory behaviour dataset has no token vocabularies: export says so, writes nothing."""
  ds = behaviour.in_memory(behaviour.BehaviourConfig(num_users=5, num_items=9), sizes=(8, 8, 8))
  trainer = train.Trainer(common.config("din", **{"dataset.name": "synthetic_behaviour"}), ds)
  with pytest.raises(ValueError, match="no saved sequence columns.*in-memory"):
    export.export(trainer, trainer.init_state(), str(tmp_path / "models"))
  assert not (tmp_path / "models").exists()
