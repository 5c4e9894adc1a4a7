"""Counters of a training run: training throughput and the input rows each process read."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax


@dataclasses.dataclass
class Throughput:
  """Examples/s of training alone: the first (compile) step and evaluations excluded."""

  batch_size: int
  start_step: int
  examples: int = 0
  seconds: float = 0.0
  last: float | None = None

  def tick(self, step: int) -> None:
    now = time.perf_counter()
    if self.last is not None and step > self.start_step + 1:
      self.seconds += now - self.last
      self.examples += self.batch_size
    self.last = now

  def pause(self, state, step: int) -> float:
    """Waits for running steps (train time), returns when the pause (evaluation) began."""
    jax.block_until_ready(state)
    now = time.perf_counter()
    if step > self.start_step + 1:
      self.seconds, self.last = self.seconds + now - self.last, now
    return now

  def resume(self, paused_at: float) -> None:
    self.last = self.last + (time.perf_counter() - paused_at)

  @property
  def per_second(self) -> float:
    return self.examples / self.seconds if self.seconds else 0.0


@dataclasses.dataclass
class InputRows:
  """Training rows this process read, per step; written to ``input_rows.<process>.json``.

  With per-process input each of P processes reads 1/P of every global batch; this is the
  count that shows it (tests/test_multihost.py).
  """

  per_process: bool
  global_batch: int
  steps: int = 0
  rows: int = 0
  sizes: set = dataclasses.field(default_factory=set)

  def add(self, rows: int) -> None:
    self.steps += 1
    self.rows += rows
    self.sizes.add(rows)

  def write(self, workdir: str) -> None:
    path = os.path.join(workdir, f"input_rows.{jax.process_index()}.json")
    with open(path, "w") as fh:
      json.dump(
        {
          "process_index": jax.process_index(),
          "process_count": jax.process_count(),
          "per_process_input": self.per_process,
          "global_batch": self.global_batch,
          "steps": self.steps,
          "rows": self.rows,
          "rows_per_step": sorted(self.sizes),
        },
        fh,
      )
