"""Streaming input: same examples per epoch as in-memory, bounded read-ahead, exact resume."""

import glob
import threading
import time

import jax
import numpy as np
import pytest

from jaxctr import configs, train
from jaxctr.data.loader import Loader
from jaxctr.data.storage import ArraySplit, DataError


def _source(n, chunk_rows, cls=ArraySplit):
  return cls(
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
  with pytest.raises(ValueError, match=r"config\.dataset\.read_ahead"):
    Loader(_source(100, 10), 10, in_memory=False, read_ahead=-1)


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_resume_with_windows_smaller_than_a_batch(drop_remainder):
  """Batch k spans several windows; resuming inside a window skips exactly its first rows."""
  src = _source(1010, 30)  # 34 chunks, the last of 20 rows; windows of 30 rows < batch 100
  kw = dict(seed=7, num_epochs=2, in_memory=False, window_chunks=1)
  kw.update(drop_remainder=drop_remainder)
  full = list(Loader(src, 100, **kw))
  assert len(full) == 2 * (10 if drop_remainder else 11)
  for start in (3, len(full) // 2 - 1, len(full) // 2 + 4):
    resumed = list(Loader(src, 100, start_step=start, **kw))
    assert len(resumed) == len(full) - start
    for a, b in zip(full[start:], resumed, strict=True):
      assert a.keys() == b.keys()
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])


class _CountingSplit(ArraySplit):
  """Counts the rows read from the split (every read materialises its rows)."""

  def __init__(self, *a, **kw):
    super().__init__(*a, **kw)
    self.read, self.chunk_ids, self.lock = 0, set(), threading.Lock()

  def chunks(self, indices):
    out = super().chunks(indices)
    with self.lock:
      self.read += sum(len(c["label"]) for c in out)
      self.chunk_ids.update(int(i) for i in indices)
    return out


def _most_rows_ahead(read_ahead):
  src = _CountingSplit(_source(20_000, 50).arrays, 50)  # 400 chunks: windows of 100 rows
  loader = Loader(
    src, 100, seed=0, num_epochs=1, in_memory=False, window_chunks=2, read_ahead=read_ahead
  )
  worst = consumed = 0
  for b in loader:
    consumed += len(b["label"])
    time.sleep(0.003 if consumed > 100 else 0.3)  # lets reading get as far ahead as it may
    worst = max(worst, src.read - consumed)
  assert consumed == src.read == 20_000  # every row read once
  return worst


def test_streaming_reads_a_bounded_number_of_windows_ahead():
  """Rows read but not yet handed out stay within the windows in flight, not the split.

  In flight: `read_ahead` windows in Grain's buffer, the one being rebatched, and batches
  queued by the loader's prefetch (2, one more being put, one being taken).
  """
  read_ahead, window, batch, prefetch = 2, 100, 100, 2
  assert _most_rows_ahead(read_ahead) <= (read_ahead + 1) * window + (prefetch + 2) * batch
  # The measurement sees read-ahead: a deep buffer (Grain's default is 500) runs far ahead.
  assert _most_rows_ahead(40) > 20 * window


def test_corrupt_file_error_names_the_file(tmp_path):
  from jaxctr.data import builders

  ds = builders.load_dataset("synthetic_ctr", str(tmp_path), builder_kwargs={"config": "tiny"})
  (path,) = glob.glob(str(tmp_path / "**" / "*train.array_record*"), recursive=True)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 3 : len(data) // 3 + 20000] = bytes(20000)
  open(path, "wb").write(data)
  with pytest.raises(DataError, match="cannot read records .* of .*train.array_record"):
    for _ in Loader(ds.split("train"), 512, num_epochs=1, in_memory=False):
      pass


def test_streaming_training_resumed_mid_epoch_equals_uninterrupted(tmp_path, monkeypatch):
  modes = []
  init = Loader.__init__

  def spy(self, *a, **kw):
    modes.append((kw["in_memory"], kw["window_chunks"], kw["read_ahead"]))
    init(self, *a, **kw)

  monkeypatch.setattr(Loader, "__init__", spy)

  def cfg():
    c = configs.base_config()
    c.dataset.data_dir = str(tmp_path / "tfds")
    c.dataset.builder_kwargs = {"config": "tiny"}  # 20 chunks of 1024 train rows
    c.dataset.streaming = True
    c.dataset.shuffle_window = 3
    c.dataset.read_ahead = 1
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
  assert modes and set(modes) == {(False, 3, 1)}  # training and evaluation both streamed


def test_preparation_streams_splits_to_disk_without_tfds_shuffler(tmp_path, monkeypatch):
  """Records go from the generator to uncompressed array_record in order; nothing buffers a split.

  TFDS's `Shuffler` (used by `GeneratorBasedBuilder` even with shuffling disabled) holds up to
  1 GB of a split in memory and needs TensorFlow beyond that.
  """
  from array_record.python import array_record_module
  from tensorflow_datasets.core import shuffle

  from jaxctr.data import builders, synthetic

  def refuse(*a, **k):
    raise AssertionError("a split went through TFDS's shuffler")

  monkeypatch.setattr(shuffle, "Shuffler", refuse)
  cfg = builders.CtrConfig(
    name="ordered", sizes=(3000, 500, 500), chunk_rows=512, synthetic=synthetic.SyntheticConfig()
  )
  ds = builders.load_dataset("synthetic_ctr", str(tmp_path), builder_kwargs={"config": cfg})
  train = ds.split("train")
  assert len(train) == 3000 and train.num_chunks == 6
  shards = sorted(tmp_path.rglob("*train.array_record*"))
  assert len(shards) == 1
  reader = array_record_module.ArrayRecordReader(str(shards[0]))
  assert reader.num_records() == 6
  assert "uncompressed" in reader.writer_options_string()
  reader.close()


@pytest.mark.parametrize("drop_remainder", [True, False])
def test_input_shards_split_reading_between_processes(drop_remainder):
  """With input_shards=4, 2 processes read disjoint chunks and together give one process's
  batches bit-exactly; every row comes once per epoch (evaluation: exactly once)."""
  n, kw = 2350, dict(seed=3, num_epochs=2, window_chunks=2, input_shards=4, in_memory=False)
  kw["drop_remainder"] = drop_remainder
  one = list(Loader(_source(n, 50), 200, **kw))
  srcs = [_source(n, 50, _CountingSplit), _source(n, 50, _CountingSplit)]
  two = [list(Loader(s, 200, shard_index=i, num_shards=2, **kw)) for i, s in enumerate(srcs)]
  assert len(one) == len(two[0]) == len(two[1]) > 0
  for a, b0, b1 in zip(one, *two, strict=True):
    for k in a:
      np.testing.assert_array_equal(np.concatenate([b0[k], b1[k]]), a[k])
  # Process p reads only the chunks of shards 2p and 2p + 1 (chunk i is in shard i % 4).
  assert srcs[0].chunk_ids == {i for i in range(47) if i % 4 in (0, 1)}
  assert srcs[1].chunk_ids == {i for i in range(47) if i % 4 in (2, 3)}
  steps = len(one) // 2
  for e in range(2):
    rows = [b["cat"][:, 0][b["mask"] > 0] if "mask" in b else b["cat"][:, 0] for b in one]
    got = np.sort(np.concatenate(rows[e * steps : (e + 1) * steps]))
    if drop_remainder:  # each shard drops at most its last partial batch of 50 rows
      assert len(np.unique(got)) == len(got) and n - len(got) < 4 * 50
    else:
      np.testing.assert_array_equal(got, np.arange(n))
  # Resuming at any step (mid-epoch, second epoch) equals the uninterrupted tail.
  for k in (3, steps + 2):
    tail = list(Loader(_source(n, 50), 200, start_step=k, **kw))
    for a, b in zip(one[k:], tail, strict=True):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_input_shards_config_errors_name_the_key():
  with pytest.raises(ValueError, match="config.dataset.input_shards=3"):
    Loader(_source(1000, 50), 200, in_memory=False, input_shards=3, num_shards=2)
  with pytest.raises(ValueError, match="input_shards=2 needs config.dataset.streaming"):
    Loader(_source(1000, 50), 200, in_memory=True, input_shards=2)
