"""A dynamic batcher: concurrent requests' rows run through the model together.

As Triton's dynamic batcher: a request waits at most ``max_delay`` for others to join it,
a batch holds at most ``max_batch`` rows, and the model sees only a few padded bucket
sizes (`ServableModel`). The model runs in one worker thread, so the event loop keeps
accepting, parsing and encoding requests while a batch computes, and the next batch
collects the requests that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import numpy as np
from absl import logging

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]


class DynamicBatcher:
  """Queues encoded requests and runs them in batches.

  Args:
    predict: Encoded ids [B, F], values [B, N] -> probabilities [B] (runs in a thread).
    max_batch: Most rows in one model call (a larger request runs alone, chunked).
    max_delay: Seconds the first request of a batch waits for more.
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
    self.queue: asyncio.Queue = asyncio.Queue()
    self.batches = 0
    self.rows = 0
    self._task: asyncio.Task | None = None

  def start(self) -> None:
    self._task = asyncio.get_running_loop().create_task(self._loop())

  async def stop(self) -> None:
    """Runs what is queued, then stops."""
    while not self.queue.empty():
      await asyncio.sleep(0.001)
    if self._task is not None:
      self._task.cancel()
      try:
        await self._task
      except asyncio.CancelledError:
        pass

  @property
  def pending(self) -> int:
    return self.queue.qsize()

  async def submit(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Probabilities of one request's encoded rows."""
    fut = asyncio.get_running_loop().create_future()
    await self.queue.put((cat, num, fut))
    return await fut

  async def _loop(self) -> None:
    loop = asyncio.get_running_loop()
    carry = None
    while True:
      first = carry if carry is not None else await self.queue.get()
      carry = None
      items, n = [first], len(first[0])
      deadline = loop.time() + self.max_delay
      while n < self.max_batch:
        try:
          item = self.queue.get_nowait()
        except asyncio.QueueEmpty:
          left = deadline - loop.time()
          if left <= 0:
            break
          try:
            item = await asyncio.wait_for(self.queue.get(), left)
          except asyncio.TimeoutError:
            break
        if n + len(item[0]) > self.max_batch:
          carry = item  # starts the next batch
          break
        items.append(item)
        n += len(item[0])
      await self._run(loop, items)

  async def _run(self, loop, items) -> None:
    cat = np.concatenate([it[0] for it in items]) if len(items) > 1 else items[0][0]
    num = np.concatenate([it[1] for it in items]) if len(items) > 1 else items[0][1]
    try:
      out = await loop.run_in_executor(self.executor, self.predict, cat, num)
    except Exception as e:  # answer every waiting request; the loop keeps running
      logging.exception("batch of %d rows failed", len(cat))
      for it in items:
        if not it[2].done():
          it[2].set_exception(e)
      return
    self.batches += 1
    self.rows += len(cat)
    lo = 0
    for c, _, fut in items:
      if not fut.done():
        fut.set_result(out[lo : lo + len(c)])
      lo += len(c)
