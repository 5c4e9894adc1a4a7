"""A serving artifact's encoder is checked against what export recorded.

The vocabularies and numeric statistics travel in the artifact; one edited or swapped
after export would encode requests differently from training without a word. Export
records their SHA-256 (and the prepared data's source fingerprint); loading refuses a
version whose encoder differs, naming the file.
"""

import json
import os

import numpy as np
import pytest

from jaxctr import export, train
from jaxctr.data import fingerprint
from jaxctr.serving import artifact as art
from tests.serving import common


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("artifact")
  ds, _ = common.prepare(str(tmp))
  trainer = train.Trainer(common.config("deepfm"), dataset=ds)
  path = export.export(trainer, trainer.init_state(), str(tmp / "models"))
  return ds, path


def _copy(path, dest):
  import shutil

  shutil.copytree(path, dest)
  return str(dest)


def test_export_records_the_encoder_and_its_source(exported):
  ds, path = exported
  schema = json.load(open(os.path.join(path, art.SCHEMA_FILE)))
  rec = schema["encoder"]
  assert set(rec["files"]) == {art.VOCAB_FILE}
  assert rec["source"] == fingerprint.load(ds.data_dir)  # the raw files it was prepared from
  assert [f["name"] for f in rec["source"]["files"]] == ["train.txt"]
  a = art.Artifact(path)  # unchanged: loads
  assert len(a.vocabs) == 26 and a.vocabs[0][0].size > 1


def test_vocabulary_edited_after_export_is_refused(exported, tmp_path):
  _, path = exported
  p = _copy(path, tmp_path / "1")
  with np.load(os.path.join(p, art.VOCAB_FILE)) as z:
    arrays = {k: z[k] for k in z.files}
  arrays["ids_3"] = arrays["ids_3"][::-1].copy()  # same keys, ids permuted: same size, valid
  np.savez(os.path.join(p, art.VOCAB_FILE), **arrays)
  with pytest.raises(art.ArtifactError, match=r"vocab\.npz changed after export"):
    art.Artifact(p)
  os.remove(os.path.join(p, art.VOCAB_FILE))
  with pytest.raises(art.ArtifactError, match=r"vocab\.npz is missing"):
    art.Artifact(p)


def test_numeric_statistics_edited_after_export_are_refused(exported, tmp_path):
  _, path = exported
  p = _copy(path, tmp_path / "1")
  schema_path = os.path.join(p, art.SCHEMA_FILE)
  schema = json.load(open(schema_path))
  stats = schema["dataset"]["numeric_stats"]
  assert isinstance(stats[0], dict)
  stats[0] = {**stats[0], "mean": 1e6}  # as a hand-edited normalisation would
  with open(schema_path, "w") as fh:
    json.dump(schema, fh)
  with pytest.raises(art.ArtifactError, match=r"schema\.json: its dataset, sequences, crosses"):
    art.Artifact(p)


def test_artifact_without_a_record_still_loads(exported, tmp_path):
  _, path = exported
  p = _copy(path, tmp_path / "1")  # as exported before artifacts recorded their encoder
  schema_path = os.path.join(p, art.SCHEMA_FILE)
  schema = json.load(open(schema_path))
  del schema["encoder"]
  with open(schema_path, "w") as fh:
    json.dump(schema, fh)
  assert art.Artifact(p).version == 1


def test_history_columns_and_crosses_are_part_of_the_record(tmp_path):
  # A behaviour artifact's history columns (separator, max_len, ...) and the hashed crosses
  # encode raw values as much as the vocabularies do.
  np.savez(tmp_path / art.VOCAB_FILE, keys_0=np.arange(3), ids_0=np.arange(1, 4))
  schema = {
    "dataset": {"features": [], "numeric_stats": []},
    "sequences": [{"name": "item_history", "separator": "^", "max_len": 50}],
    "crosses": [{"key": "x", "pairs": [["C1", "C2"]], "num_buckets": 64, "seed": 0}],
  }
  schema["encoder"] = art.encoder_record(str(tmp_path), schema, None)
  art.check_encoder(str(tmp_path), json.loads(json.dumps(schema)))  # as read back: unchanged
  for section, edit in (("sequences", {"max_len": 20}), ("crosses", {"num_buckets": 32})):
    changed = json.loads(json.dumps(schema))
    changed[section][0].update(edit)
    with pytest.raises(art.ArtifactError, match=r"sections .* changed after export"):
      art.check_encoder(str(tmp_path), changed)
