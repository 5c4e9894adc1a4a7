"""Run outputs: TensorBoard events, ``metrics.jsonl`` and the progress bar."""

from __future__ import annotations

import json
import math
import os
import sys

from absl import logging


class _NoBar:
  def update(self, n=1):
    pass

  def set_postfix(self, **kw):
    pass

  def close(self):
    pass


class SummaryWriter:
  """Writes scalars to TensorBoard and to ``<workdir>/metrics.jsonl``.

  Only process 0 writes (``enabled``); other processes get no-ops.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._tb = None
    self._jsonl = None
    if enabled:
      from tensorboardX import SummaryWriter as TBWriter

      self._tb = TBWriter(os.path.join(workdir, "tensorboard"))
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def scalars(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    clean = {}
    for k, v in values.items():
      if isinstance(v, int | float) and not isinstance(v, bool) and v is not None:
        clean[k] = float(v)
        if math.isfinite(v):
          self._tb.add_scalar(k, v, step)
    self._jsonl.write(json.dumps({"step": int(step), **clean}) + "\n")
    self._jsonl.flush()

  def write_text(self, tag: str, text: str) -> None:
    if self.enabled:
      self._tb.add_text(tag, text, 0)

  def progress(self, total: int, initial: int = 0, enabled: bool = True):
    """A tqdm bar on stderr (or a no-op when disabled or not process 0)."""
    if not (enabled and self.enabled):
      return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)

  def close(self) -> None:
    if self.enabled:
      self._tb.close()
      self._jsonl.close()
      logging.info("summaries written")
