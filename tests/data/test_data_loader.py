"""Loader: determinism, exact resume, reshuffling, sharding, eval padding, prefetch errors."""

import threading
import time

import numpy as np
import pytest

from jaxctr.data.loader import Loader, prefetch
from jaxctr.data.storage import ArraySplit

N = 1000


def _source(n=N, chunk_rows=64, seq=False):
  rng = np.random.default_rng(0)
  arrays = {
    "label": (np.arange(n) % 2).astype(np.float32),
    "cat": np.stack([np.arange(n), np.arange(n) * 7 % 13], axis=1).astype(np.int32),
    "num": rng.normal(size=(n, 3)).astype(np.float32),
  }
  if seq:
    arrays["hist"] = np.tile(np.arange(4, dtype=np.int32), (n, 1))
  return ArraySplit(arrays, chunk_rows)


def _take(loader, k):
  out = []
  for b in loader:
    out.append(b)
    if len(out) == k:
      break
  return out


def _rows(batches):
  return [b["cat"][:, 0] for b in batches]


@pytest.mark.parametrize("in_memory", [True, False])
def test_deterministic_and_exact_resume(in_memory):
  src = _source()
  kw = dict(seed=3, num_epochs=3, in_memory=in_memory, window_chunks=3)
  full = list(Loader(src, 100, **kw))
  assert len(full) == 3 * (N // 100) == len(Loader(src, 100, **kw))
  again = list(Loader(src, 100, **kw))
  for a, b in zip(full, again, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  for start in (1, 9, 10, 17):
    resumed = list(Loader(src, 100, start_step=start, **kw))
    assert len(resumed) == len(full) - start
    for a, b in zip(full[start:], resumed, strict=True):
      for k in a:
        np.testing.assert_array_equal(a[k], b[k])
  # Rows of a batch stay aligned across columns.
  b = full[4]
  np.testing.assert_array_equal(b["label"], b["cat"][:, 0] % 2)
  np.testing.assert_array_equal(b["num"], src.arrays["num"][b["cat"][:, 0]])


@pytest.mark.parametrize("in_memory", [True, False])
def test_epochs_are_permutations_and_reshuffled(in_memory):
  src = _source()
  batches = list(Loader(src, 100, seed=1, num_epochs=2, in_memory=in_memory, window_chunks=4))
  e0 = np.concatenate(_rows(batches[:10]))
  e1 = np.concatenate(_rows(batches[10:]))
  np.testing.assert_array_equal(np.sort(e0), np.arange(N))
  np.testing.assert_array_equal(np.sort(e1), np.arange(N))
  assert not np.array_equal(e0, e1)
  assert not np.array_equal(e0, np.arange(N))
  other_seed = np.concatenate(_rows(_take(Loader(src, 100, seed=2, in_memory=in_memory), 10)))
  assert not np.array_equal(e0, other_seed)
  ordered = np.concatenate(
    _rows(list(Loader(src, 100, shuffle=False, num_epochs=1, in_memory=in_memory)))
  )
  np.testing.assert_array_equal(ordered, np.arange(N))


def test_drop_remainder_and_endless():
  src = _source(n=1050)
  assert len(list(Loader(src, 100, num_epochs=1))) == 10
  endless = Loader(src, 100, seed=0)
  assert len(_take(endless, 25)) == 25
  with pytest.raises(TypeError):
    len(endless)


@pytest.mark.parametrize("in_memory", [True, False])
def test_shards_are_disjoint_parts_of_global_batch(in_memory):
  src = _source()
  kw = dict(seed=5, num_epochs=1, in_memory=in_memory)
  glob = list(Loader(src, 100, **kw))
  shards = [list(Loader(src, 100, shard_index=i, num_shards=4, **kw)) for i in range(4)]
  for step, g in enumerate(glob):
    parts = [s[step]["cat"][:, 0] for s in shards]
    assert all(len(p) == 25 for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), g["cat"][:, 0])
  with pytest.raises(ValueError, match="divisible"):
    Loader(src, 100, num_shards=3)


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("num_shards", [1, 2])
def test_eval_padding_and_mask(in_memory, num_shards):
  src = _source(n=1050, seq=True)
  seen, masks = [], []
  for shard in range(num_shards):
    batches = list(
      Loader(
        src,
        200,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        in_memory=in_memory,
        shard_index=shard,
        num_shards=num_shards,
      )
    )
    assert len(batches) == 6
    for b in batches:
      assert b["mask"].dtype == np.float32 and b["mask"].shape == (200 // num_shards,)
      assert b["cat"].shape[0] == b["label"].shape[0] == b["hist"].shape[0] == 200 // num_shards
      seen.append(b["cat"][b["mask"] == 1, 0])
      masks.append(b["mask"])
    last = batches[-1]
    pad = last["mask"] == 0
    assert (
      (last["cat"][pad] == 0).all()
      and (last["hist"][pad] == -1).all()
      and (last["label"][pad] == 0).all()
    )
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(1050))
  assert sum(m.sum() for m in masks) == 1050


def test_prefetch_propagates_worker_exceptions():
  def gen():
    yield 1
    yield 2
    raise RuntimeError("boom in worker")

  it = prefetch(gen(), 2)
  assert next(it) == 1 and next(it) == 2
  with pytest.raises(RuntimeError, match="boom in worker"):
    next(it)

  def bad_fn(x):
    if x == 3:
      raise ValueError("fn failed on 3")
    return x * 10

  out = []
  with pytest.raises(ValueError, match="fn failed on 3"):
    for y in prefetch(range(10), 1, fn=bad_fn):
      out.append(y)
  assert out == [0, 10, 20]
  assert list(prefetch(range(5), 0, fn=lambda x: x + 1)) == [1, 2, 3, 4, 5]


def test_prefetch_worker_stops_when_consumer_leaves():
  before = threading.active_count()
  it = prefetch(iter(range(10**9)), 2)
  assert next(it) == 0
  it.close()
  deadline = time.time() + 2
  while threading.active_count() > before and time.time() < deadline:
    time.sleep(0.05)
  assert threading.active_count() == before


def test_loader_errors_surface(tmp_path):
  class Broken(ArraySplit):
    def chunks(self, indices):
      raise OSError("disk gone")

  src = Broken(_source().arrays, 64)
  with pytest.raises(OSError, match="disk gone"):
    next(iter(Loader(src, 100, in_memory=False)))
  with pytest.raises(ValueError, match="fewer than one batch"):
    Loader(_source(n=50), 100)
