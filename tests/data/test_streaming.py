"""Streaming input: same examples per epoch as in-memory, and exact resume of a training run."""

import jax
import numpy as np
import pytest

from jaxctr import configs, train
from jaxctr.data.loader import Loader
from jaxctr.data.storage import ArraySplit


def _source(n, chunk_rows):
  return ArraySplit(
    {
      "label": np.zeros(n, np.float32),
      "cat": np.arange(n, dtype=np.int32)[:, None],
      "num": np.zeros((n, 0), np.float32),
    },
    chunk_rows,
  )


@pytest.mark.parametrize("n,chunk_rows,window", [(1200, 64, 3), (1000, 100, 1)])
def test_streaming_and_in_memory_visit_same_examples_per_epoch(n, chunk_rows, window):
  src = _source(n, chunk_rows)
  kw = dict(seed=4, num_epochs=2, window_chunks=window)
  mem = [b["cat"][:, 0] for b in Loader(src, 100, in_memory=True, **kw)]
  stream = [b["cat"][:, 0] for b in Loader(src, 100, in_memory=False, **kw)]
  steps = len(mem) // 2
  assert len(stream) == len(mem)
  for e in range(2):
    a = np.sort(np.concatenate(mem[e * steps : (e + 1) * steps]))
    b = np.sort(np.concatenate(stream[e * steps : (e + 1) * steps]))
    np.testing.assert_array_equal(a, np.arange(n))
    np.testing.assert_array_equal(b, np.arange(n))
  # Different orders: streaming shuffles chunk order and rows within windows.
  assert not np.array_equal(np.concatenate(mem), np.concatenate(stream))


def test_bad_shuffle_window_names_config_key():
  with pytest.raises(ValueError, match="shuffle_window"):
    Loader(_source(100, 10), 10, in_memory=False, window_chunks=0)


def test_streaming_training_resumed_mid_epoch_equals_uninterrupted(tmp_path, monkeypatch):
  modes = []
  init = Loader.__init__

  def spy(self, *a, **kw):
    modes.append((kw["in_memory"], kw["window_chunks"]))
    init(self, *a, **kw)

  monkeypatch.setattr(Loader, "__init__", spy)

  def cfg():
    c = configs.base_config()
    c.dataset.data_dir = str(tmp_path / "tfds")
    c.dataset.builder_kwargs = {"config": "tiny"}  # 20 chunks of 1024 train rows
    c.dataset.streaming = True
    c.dataset.shuffle_window = 3
    c.model = "fm"
    c.embed_dim = 4
    c.batch_size = 512
    c.eval_batch_size = 2048
    c.total_steps = 16  # 39 steps per epoch: stopped and resumed mid-epoch
    c.eval_every_steps = 8
    c.log_every_steps = 8
    c.progress_bar = False
    c.num_devices = 1
    return c

  full = train.train_and_evaluate(cfg(), str(tmp_path / "full"))
  wd = str(tmp_path / "resumed")
  part = train.train_and_evaluate(cfg(), wd, stop_at_step=7)
  assert part["preempted"] and part["step"] == 7
  resumed = train.train_and_evaluate(cfg(), wd)
  assert resumed["step"] == full["step"] == 16
  leaves = lambda s: [np.asarray(x) for x in jax.tree.leaves(s)]
  for a, b in zip(leaves(full["final_state"]), leaves(resumed["final_state"]), strict=True):
    np.testing.assert_array_equal(a, b)
  assert resumed["test_auc"] == full["test_auc"]
  assert modes and set(modes) == {(False, 3)}  # training and evaluation both streamed


def test_spool_keeps_order_on_disk_and_rejects_out_of_order_keys(tmp_path):
  from jaxctr.data import spool

  s = spool.Spool(tmp_path, "salt", disable_shuffling=True)
  for k in range(5):
    s.add(k, bytes([k]) * (k + 1))
  assert s.num_examples == 5 and s.size == 15 and s.bucket_lengths == [5]
  assert list(s) == [(k, bytes([k]) * (k + 1)) for k in range(5)]
  assert not list(tmp_path.iterdir())  # the spool file is gone once read
  with pytest.raises(ValueError, match="in order"):
    spool.Spool(tmp_path, "salt", disable_shuffling=True).add(3, b"x")
