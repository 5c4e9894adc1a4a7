"""Exported models predict exactly what the trainer predicts, from raw values.

For DeepFM, DCN-V2, Wide & Deep, OptInter (memorized crosses) and a DHE model (with
hashing, double hashing, QR, numeric encoders, sharded and host-offloaded tables between
them) the served predictions on the raw test split (including keys the vocabulary never kept, which map to the OOV id) equal the
trainer's predictions on the prepared test split within 1e-6; int8 tables stay within their
stated bound.
"""

import json
import os

import numpy as np
import pytest

from jaxctr import export
from jaxctr.data import parsers
from jaxctr.serving import artifact as art
from jaxctr.serving.model import ServableModel
from tests.serving import common

BUCKETS = (128,)

CASES = {
  # Full tables, bucketed numeric features (fitted boundaries travel as parameters), hashing
  # and QR on two features, int16 storage of the tables.
  "deepfm": dict(
    model="deepfm",
    **{
      "numeric.encoder": "equal_frequency",
      "numeric.num_buckets": 4,
      "embedding.dtype": "int16",
      "embedding.per_feature": {
        "C1": {"method": "hashing", "num_buckets": 7},
        "C2": {"method": "qr", "num_buckets": 3},
      },
    },
  ),
  # Double hashing everywhere, AutoDis numeric fields, tables sharded row-wise over 2 devices.
  "dcnv2": dict(
    model="dcnv2",
    **{
      "model_config.cross_layers": 2,
      "numeric.encoder": "autodis",
      "numeric.autodis_buckets": 4,
      "embedding.method": "double_hashing",
      "embedding.num_buckets": 5,
      "embedding.hot_ids": 3,
      "num_devices": 2,
      "embedding.strategy": "row_wise",
    },
  ),
  # Wide & Deep's hashed cross products (a width-1 sequence table), fp16 tables.
  "wide_deep": dict(
    model="wide_deep",
    **{
      "model_config.cross_pairs": (("C1", "C2"), ("C3", "C4")),
      "model_config.cross_hash_buckets": 64,
      "embedding.dtype": "float16",
    },
  ),
  # OptInter retrained: two memorized pairs (hashed crosses with their own rows), the rest
  # factorized but for a few pairs without interaction.
  "optinter": dict(
    model="optinter",
    **{
      "model_config.choices": (1, 1, 0, 0) + (2,) * 321,
      "model_config.memorized_pairs": (("C1", "C2"), ("C1", "C3")),
      "model_config.memorized_hash_buckets": 64,
    },
  ),
  # DHE on every feature but C1, whose full table is host-offloaded.
  "dhe": dict(
    model="deepfm",
    **{
      "embedding.method": "dhe",
      "embedding.dhe_k": 16,
      "embedding.dhe_hidden": (8,),
      "embedding.per_feature": {"C1": {"method": "full"}},
      "offload.enabled": True,
      "offload.cache_fraction": 1.0,
    },
  ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  ds, test_lines = common.prepare(str(tmp_path_factory.mktemp("criteo")))
  blob = ("\n".join(test_lines) + "\n").encode()
  chunks = list(parsers.parse_criteo("<test>", blocks=[blob], strict=True))
  keys = np.concatenate([c.cat for c in chunks])
  num = np.concatenate([c.num for c in chunks])
  labels = np.concatenate([c.label for c in chunks])
  return ds, keys, num, labels


@pytest.mark.parametrize("case", sorted(CASES))
def test_served_equals_offline(case, data, tmp_path):
  ds, keys, num, labels = data
  cfg = common.config(**CASES[case])
  trainer, state = common.checkpointed_run(cfg, ds, str(tmp_path / "run"))
  ref, ref_labels = common.offline(trainer, state)
  np.testing.assert_array_equal(ref_labels, labels)  # same rows in the same order

  # Export from the workdir's checkpoint, as the CLI does (config.json + restore).
  tr2, st2, step = export.load_trained(str(tmp_path / "run"), dataset=ds)
  assert step == 0
  path = export.export(tr2, st2, str(tmp_path / "models"), step=step)
  model = ServableModel(path, buckets=BUCKETS)
  got = model.predict_keys(keys, num)
  assert np.abs(got - ref).max() <= 1e-6, case
  assert ref.std() > 1e-4  # predictions vary: the comparison is not between constants
  # Unseen keys: some test rows hold keys the vocabulary never kept (-> OOV id 0).
  cat, _ = model.encoder.encode_keys(keys, num)
  assert (cat == 0).any() and (keys[cat == 0] != -1).any()
  # A row of raw values as a request carries them: hex strings, numbers and nulls.
  names = model.encoder.names
  inst = {n: (f"{k:08x}" if k >= 0 else None) for n, k in zip(names[:26], keys[0], strict=False)}
  inst.update(
    {n: (None if np.isnan(v) else int(v)) for n, v in zip(names[26:], num[0], strict=True)}
  )
  assert abs(model.predict_instances([inst])[0] - ref[0]) <= 1e-6

  if case == "deepfm":  # int8 tables: every element within the stated bound
    p8 = export.export(tr2, st2, str(tmp_path / "models"), dtype="int8", step=step)
    assert os.path.basename(p8) == "2"
    q = ServableModel(p8, buckets=BUCKETS)
    schema = json.load(open(os.path.join(p8, art.SCHEMA_FILE)))
    for s in q.artifact.stacks:
      full = np.load(os.path.join(path, art.TABLE_DIR, f"{q.artifact.stacks.index(s)}.table.npy"))
      bound = art.ERROR_BOUND["int8"] * np.abs(full).max(axis=1)
      back = np.asarray(s.table, np.float32) * s.scale
      assert (np.abs(back - full).max(axis=1) <= bound + 1e-9).all()
      assert schema["max_abs_error"][s.name] <= bound.max() + 1e-9
    assert np.abs(q.predict_keys(keys, num) - ref).max() < 1e-2
