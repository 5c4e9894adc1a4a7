"""A NaN in one batch: training stops naming it (no bad checkpoint), or skips exactly it."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxctr import checkpoint, configs, guards, train
from jaxctr.data import builders, storage
from tests.common import override

BAD_STEP = 7  # batch 6 (0-based) of an unshuffled epoch holds the NaN


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  ds = builders.load_dataset(
    "synthetic_ctr", str(tmp_path_factory.mktemp("tfds")), builder_kwargs={"config": "tiny"}
  )
  arrays = {s: ds.split(s).read_all() for s in ("train", "valid", "test")}

  def make(train_arrays):
    sources = {s: storage.ArraySplit(a, 1024) for s, a in arrays.items()}
    sources["train"] = storage.ArraySplit(train_arrays, 1024)
    return dataclasses.replace(ds, sources=sources)

  bad = dict(arrays["train"], num=arrays["train"]["num"].copy())
  bad["num"][512 * (BAD_STEP - 1) + 3, 2] = np.inf
  return make(arrays["train"]), make(bad)


def _config(**kw):
  c = configs.base_config()
  c.model = "fm"
  c.embed_dim = 4
  c.batch_size = 512
  c.eval_batch_size = 4096
  c.total_steps = 12
  c.eval_every_steps = 12
  c.log_every_steps = 4
  c.shuffle = False
  c.progress_bar = False
  c.num_devices = 1
  c.checkpoint.every_steps = 4
  return override(c, kw)


def test_stop_names_step_batch_feature_and_keeps_last_good_checkpoint(datasets, tmp_path):
  _, bad = datasets
  with pytest.raises(guards.NonFiniteError) as e:
    train.train_and_evaluate(_config(), str(tmp_path), dataset=bad)
  msg = str(e.value)
  assert f"non-finite loss at step {BAD_STEP} (epoch 1, batch {BAD_STEP - 1} of the epoch)" in msg
  assert "NaN/inf in numeric feature(s) I3" in msg and "dense" in msg
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"), async_save=False)
  assert ckpt.latest_step() == 4  # step 8's checkpoint would hold the bad update: never saved
  leaves = ckpt.restore_leaves()
  assert all(np.isfinite(v).all() for v in leaves.values() if v.dtype.kind == "f")


def test_skip_leaves_state_as_if_the_batch_was_not_there(datasets, tmp_path):
  good, bad = datasets
  skipped = train.train_and_evaluate(
    _config(total_steps=BAD_STEP, on_nonfinite="skip", **{"checkpoint.enabled": False}),
    str(tmp_path / "skip"),
    dataset=bad,
  )
  assert skipped["nonfinite_skipped"] == 1 and np.isfinite(skipped["test_logloss"])
  before = train.train_and_evaluate(
    # The same (skip-mode) program on clean data: XLA fuses the select differently, so the
    # stop-mode program may differ in the last bit.
    _config(total_steps=BAD_STEP - 1, on_nonfinite="skip", **{"checkpoint.enabled": False}),
    str(tmp_path / "clean"),
    dataset=good,
  )
  a, b = skipped["final_state"], before["final_state"]
  assert int(a.step) == BAD_STEP and int(b.step) == BAD_STEP - 1
  a, b = a.replace(step=b.step), b  # everything but the step counter is equal
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_bad_mode_is_refused():
  with pytest.raises(ValueError, match="on_nonfinite"):
    guards.NonFiniteMonitor("ignore")
