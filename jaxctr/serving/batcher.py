"""A dynamic batcher: concurrent requests' rows run through the model together.

As Triton's dynamic batcher: a request waits at most ``max_delay`` after its arrival for
others to join it (one that already waited that long while the previous batch ran goes
at once), a batch holds at most ``max_batch`` rows, and the model sees only a few padded
bucket sizes (`ServableModel`). The model runs in one worker thread, one batch at a time,
so the event loop keeps accepting and parsing requests while a batch computes, and the
next batch takes the requests that arrived meanwhile. Requests wait in a plain deque and
the loop is woken by one future per wait: no queue, timer task or thread hop per request.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Callable

import numpy as np
from absl import logging

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]


class DynamicBatcher:
  """Queues requests' arrays and runs them in batches.

  Args:
    predict: Arrays [B, ...], [B, ...] (rows of several requests concatenated) ->
      probabilities [B]; runs in ``executor``.
    max_batch: Most rows in one model call (`submit` takes at most this many).
    max_delay: Seconds a request waits, from its arrival, for others to join it.
    executor: Where ``predict`` runs (one thread: model calls never overlap).
  """

  def __init__(
    self,
    predict: Predict,
    max_batch: int = 512,
    max_delay: float = 0.002,
    executor: concurrent.futures.Executor | None = None,
  ):
    self.predict = predict
    self.max_batch = max_batch
    self.max_delay = max_delay
    self.executor = executor or concurrent.futures.ThreadPoolExecutor(1, "jaxctr-batcher")
    self._items: collections.deque = collections.deque()  # (a, b, future, arrival time)
    self._rows = 0  # rows in _items
    self._wake: asyncio.Future | None = None  # the loop's wait, while it waits
    self.batches = 0
    self.rows = 0
    self._task: asyncio.Task | None = None

  def start(self) -> None:
    self._task = asyncio.get_running_loop().create_task(self._loop())

  async def stop(self) -> None:
    """Runs what is queued, then stops."""
    while self._items:
      await asyncio.sleep(0.001)
    if self._task is not None:
      self._task.cancel()
      try:
        await self._task
      except asyncio.CancelledError:
        pass

  @property
  def pending(self) -> int:
    """Requests queued and not yet taken into a batch."""
    return len(self._items)

  async def submit(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Probabilities of one request's rows (at most ``max_batch``)."""
    if len(a) > self.max_batch:
      raise ValueError(f"{len(a)} rows exceed max_batch={self.max_batch}")
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    self._items.append((a, b, fut, loop.time()))
    self._rows += len(a)
    # Wake the loop for its first request, or when a batch is full.
    if self._wake is not None and (len(self._items) == 1 or self._rows >= self.max_batch):
      self._wake_up()
    return await fut

  def _wake_up(self, *_) -> None:
    if self._wake is not None and not self._wake.done():
      self._wake.set_result(None)

  async def _wait(self, loop, deadline: float | None) -> None:
    self._wake = loop.create_future()
    timer = loop.call_at(deadline, self._wake_up) if deadline is not None else None
    try:
      await self._wake
    finally:
      self._wake = None
      if timer is not None:
        timer.cancel()

  async def _loop(self) -> None:
    loop = asyncio.get_running_loop()
    while True:
      if not self._items:
        await self._wait(loop, None)
        continue
      deadline = self._items[0][3] + self.max_delay
      if self._rows < self.max_batch and loop.time() < deadline:
        await self._wait(loop, deadline)  # until the batch is full or the deadline
      items, n = [], 0
      while self._items and n + len(self._items[0][0]) <= self.max_batch:
        it = self._items.popleft()
        items.append(it)
        n += len(it[0])
      self._rows -= n
      await self._run(loop, items)

  async def _run(self, loop, items) -> None:
    n = sum(len(it[0]) for it in items)
    try:
      a = np.concatenate([it[0] for it in items]) if len(items) > 1 else items[0][0]
      b = np.concatenate([it[1] for it in items]) if len(items) > 1 else items[0][1]
      out = await loop.run_in_executor(self.executor, self.predict, a, b)
    except Exception as e:  # answer every waiting request; the loop keeps running
      logging.exception("batch of %d rows failed", n)
      for it in items:
        if not it[2].done():
          it[2].set_exception(e)
      return
    self.batches += 1
    self.rows += n
    lo = 0
    for x, _, fut, _ in items:
      if not fut.done():  # a client that went away cancelled its future
        fut.set_result(out[lo : lo + len(x)])
      lo += len(x)
