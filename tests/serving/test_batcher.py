"""The dynamic batcher: batching, routing of results, deadlines, failures."""

import asyncio
import time

import numpy as np
import pytest

from jaxctr.serving.batcher import DynamicBatcher


class Recorder:
  """A model whose output for a row is the row's first value (so routing is checkable)."""

  def __init__(self, fail_on=None):
    self.calls = []
    self.fail_on = fail_on

  def __call__(self, a, b):
    self.calls.append(len(a))
    if self.fail_on is not None and self.fail_on in a[:, 0]:
      raise RuntimeError("planted failure")
    return a[:, 0].astype(np.float32) + b[:, 0]


def _rows(start, n):
  return np.arange(start, start + n, dtype=np.int64)[:, None], np.zeros((n, 1), np.float32)


def test_concurrent_requests_share_batches_and_get_their_own_rows():
  async def run():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=8, max_delay=0.05)
    batcher.start()
    sizes = [3, 1, 4, 2, 5, 1, 8]
    starts = np.cumsum([0, *sizes[:-1]]) * 10
    outs = await asyncio.gather(*(batcher.submit(*_rows(s, n)) for s, n in zip(starts, sizes)))
    await batcher.stop()
    return model, batcher, sizes, starts, outs

  model, batcher, sizes, starts, outs = asyncio.run(run())
  for s, n, out in zip(starts, sizes, outs):
    np.testing.assert_array_equal(out, np.arange(s, s + n))
  assert max(model.calls) <= 8 and sum(model.calls) == sum(sizes)
  assert len(model.calls) < len(sizes)  # requests were batched together
  assert batcher.batches == len(model.calls) and batcher.rows == sum(sizes)


def test_full_batch_goes_at_once_and_a_lone_request_after_max_delay():
  async def run():
    model = Recorder()
    # A full batch must not wait for the (huge) delay.
    batcher = DynamicBatcher(model, max_batch=4, max_delay=30.0)
    batcher.start()
    t = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(batcher.submit(*_rows(i, 1)) for i in range(4))), 20)
    full = time.perf_counter() - t
    await batcher.stop()
    # A lone request waits max_delay from its arrival, not longer.
    batcher = DynamicBatcher(model, max_batch=64, max_delay=0.3)
    batcher.start()
    t = time.perf_counter()
    await batcher.submit(*_rows(0, 1))
    lone = time.perf_counter() - t
    await batcher.stop()
    return full, lone

  full, lone = asyncio.run(run())
  assert full < 10.0
  assert 0.29 <= lone < 10.0


def test_failed_batch_fails_its_requests_and_the_batcher_keeps_running():
  async def run():
    model = Recorder(fail_on=7)
    batcher = DynamicBatcher(model, max_batch=4, max_delay=0.01)
    batcher.start()
    with pytest.raises(RuntimeError, match="planted"):
      await batcher.submit(*_rows(7, 2))
    out = await batcher.submit(*_rows(20, 3))
    with pytest.raises(ValueError, match="max_batch"):
      await batcher.submit(*_rows(0, 5))
    await batcher.stop()
    return out

  np.testing.assert_array_equal(asyncio.run(run()), [20, 21, 22])
