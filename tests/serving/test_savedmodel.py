"""The TensorFlow SavedModel of an artifact predicts what `ServableModel` predicts.

The SavedModel tests need TensorFlow (the ``tf`` extra) and skip without it; the refusal
of an artifact the conversion does not cover runs without TensorFlow, as the CLI does.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxctr import export
from jaxctr.data import parsers
from jaxctr.serving import savedmodel
from jaxctr.serving.model import ServableModel
from tests.serving import common

BUCKETS = (128,)

CASES = {
  # Full tables, QR on one feature, bucketed numeric features (boundaries as parameters).
  "deepfm": dict(
    model="deepfm",
    **{
      "numeric.encoder": "equal_frequency",
      "numeric.num_buckets": 4,
      "embedding.per_feature": {"C2": {"method": "qr", "num_buckets": 3}},
    },
  ),
  # DHE on two features (their ids go to the forward pass raw), int8-able cross layers.
  "dcnv2_dhe": dict(
    model="dcnv2",
    **{
      "model_config.cross_layers": 2,
      "embedding.per_feature": {
        f"C{i}": {"method": "dhe", "dhe_k": 16, "dhe_hidden": (8,)} for i in (5, 6)
      },
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
  # Rows the test split may lack: keys no vocabulary holds, every key missing, every
  # number missing, negative and large numbers.
  rng = np.random.default_rng(1)
  extra_keys = np.stack(
    [
      rng.integers(1 << 33, 1 << 62, keys.shape[1]),  # unseen (beyond any 32-bit Criteo key)
      np.full(keys.shape[1], -1),  # all missing
      keys[0],
    ]
  )
  extra_num = np.stack(
    [np.full(num.shape[1], np.nan), num[1], np.linspace(-5.0, 1e6, num.shape[1])]
  )
  return ds, np.concatenate([keys, extra_keys]), np.concatenate([num, extra_num])


def _artifact(case, ds, tmp_path, **kw):
  cfg = common.config(**CASES[case]) if case in CASES else common.config(**kw)
  common.checkpointed_run(cfg, ds, str(tmp_path / "run"))
  trainer, state, step = export.load_trained(str(tmp_path / "run"), dataset=ds)
  return trainer, state, export.export(trainer, state, str(tmp_path / "models"), step=step)


@pytest.mark.parametrize("case", sorted(CASES))
def test_savedmodel_equals_served(case, data, tmp_path):
  tf = pytest.importorskip("tensorflow")
  ds, keys, num = data
  trainer, state, path = _artifact(case, ds, tmp_path)
  # int8 (rows times their scales) and fp16 tables too, widened inside the graph.
  paths = [path, export.export(trainer, state, str(tmp_path / "models"), dtype="int8")]
  if case == "deepfm":
    paths.append(export.export(trainer, state, str(tmp_path / "models"), dtype="float16"))
  for p in paths:
    model = ServableModel(p, buckets=BUCKETS)
    methods = {q.method for q in model.artifact.plans}
    assert methods == {"full", "qr" if case == "deepfm" else "dhe"}  # each path is covered
    want = model.predict_keys(keys, num)
    cat, _ = model.encoder.encode_keys(keys, num)
    assert (cat == 0).any() and (keys[cat == 0] != -1).any()  # unseen keys -> OOV 0
    assert np.isnan(num).any() and want.std() > 1e-4

    out = savedmodel.convert(p, str(tmp_path / "tf"))
    assert out == str(tmp_path / "tf" / os.path.basename(p))
    assert os.path.exists(os.path.join(out, "saved_model.pb"))
    fn = tf.saved_model.load(out).signatures[savedmodel.SIGNATURE]
    got = fn(keys=tf.constant(keys, tf.int64), numbers=tf.constant(num, tf.float64))
    got = got["probabilities"].numpy()
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-6, (case, p)
    # Another batch size (the batch is symbolic) and one instance.
    one = fn(keys=tf.constant(keys[-1:]), numbers=tf.constant(num[-1:]))["probabilities"]
    assert abs(one.numpy()[0] - want[-1]) <= 1e-6
    with pytest.raises(FileExistsError):
      savedmodel.convert(p, str(tmp_path / "tf"))


def test_unsupported_refused_without_tensorflow(data, tmp_path):
  ds, _, _ = data
  hashed = {"embedding.per_feature": {"C3": {"method": "hashing", "num_buckets": 7}}}
  _, _, path = _artifact(None, ds, tmp_path, model="deepfm", **hashed)
  with pytest.raises(savedmodel.UnsupportedArtifact, match=r"'C3' uses the 'hashing'"):
    savedmodel.convert(path, str(tmp_path / "tf"))
  assert not os.path.exists(tmp_path / "tf")  # refused before writing anything
  # The CLI, from the model directory (its latest version): a clear message, no traceback.
  run = subprocess.run(
    [sys.executable, "-m", "jaxctr.export_tf", f"--artifact={tmp_path / 'models'}"]
    + [f"--output={tmp_path / 'tf'}"],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert run.returncode != 0
  assert "cannot be converted to a TensorFlow SavedModel" in run.stderr
  assert "'C3' uses the 'hashing' embedding method" in run.stderr


def test_server_never_imports_tensorflow():
  # TensorFlow makes a serving process large and slow to start; only the conversion needs it.
  code = (
    "import sys, jaxctr.serve, jaxctr.serving.app, jaxctr.serving.model; "
    "bad = [m for m in ('tensorflow', 'jaxctr.serving.savedmodel_tf') if m in sys.modules]; "
    "assert not bad, bad"
  )
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
