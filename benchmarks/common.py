"""Helpers shared by the benchmark scripts (timing, JSON output, Zipf ids)."""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np


def zipf_ids(rng: np.random.Generator, n: int, vocab: int, s: float = 1.1) -> np.ndarray:
  """``n`` ids in [0, vocab) with Zipf(s) popularity, hot ids scattered over the range."""
  w = np.arange(1, vocab + 1, dtype=np.float64) ** (-s)
  cdf = np.cumsum(w)
  cdf /= cdf[-1]
  rank = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), vocab - 1)
  a = 2654435761 % vocab or 1
  while np.gcd(a, vocab) != 1:
    a += 1
  return ((rank.astype(np.int64) * a + 12345) % vocab).astype(np.int64)


def time_steps(fn, steps: int, warmup: int) -> list[float]:
  """Wall time of each of ``steps`` calls after ``warmup`` untimed ones; fn must block."""
  for _ in range(warmup):
    fn()
  out = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def peak_rss_bytes() -> int:
  """This process's peak resident memory since it started (its image, not its parent's).

  Linux's ``ru_maxrss`` survives ``execve``: a subprocess started from a large parent
  reports at least the parent's peak. ``VmHWM`` belongs to the process's own address space.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_gb() -> float:
  return peak_rss_bytes() / 1024.0**3


def emit(result: dict) -> None:
  """Prints the result as the last stdout line (one JSON object)."""
  sys.stdout.flush()
  print(json.dumps(result), flush=True)
