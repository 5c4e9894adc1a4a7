"""When and what the training loop checkpoints: the latest state and the best one.

``<workdir>/checkpoints`` keeps the latest states (resume), ``<workdir>/best`` the best
by ``config.early_stopping.monitor``. What a table contributes to a checkpoint, and how a
checkpoint saved on another mesh is re-laid out, is the table backends' business
(`jaxctr.embeddings.backends.Tables`); this module only decides when.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

from jaxctr import checkpoint as ckpt_lib
from jaxctr.early_stopping import EarlyStopping
from jaxctr.state import TrainState


class CheckpointPolicy:
  """The run's checkpointers and the decision of when to save.

  Args:
    workdir: The run's directory.
    cfg: ``config.checkpoint``.
    tables: The embedding tables' backends.
    every: Save every this many steps (and at every stop).
    guard: The run's `guards.NonFiniteMonitor`: checked before every save, so no checkpoint
      holds a non-finite update, and its count of skipped batches is saved.
  """

  def __init__(self, workdir: str, cfg, tables, every: int, guard=None):
    self.tables = tables
    self.guard = guard
    self.every = every
    self.latest = self.best = None
    if cfg.enabled:
      self.latest = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=cfg.max_to_keep, async_save=cfg.async_save
      )
      self.best = ckpt_lib.Checkpointer(
        os.path.join(workdir, "best"), max_to_keep=1, async_save=cfg.async_save
      )

  def restore_latest(self, state: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """The latest checkpoint if there is one, else ``state``; and its metadata."""
    if self.latest is None or self.latest.latest_step() is None:
      return state, {}
    return self.tables.restore(self.latest, state)

  def restore_best(self, state: TrainState) -> TrainState:
    """The best checkpoint's state if one was saved, else ``state``."""
    if self.best is None or self.best.latest_step() is None:
      return state
    return self.tables.restore(self.best, state)[0]

  def _save(self, which: ckpt_lib.Checkpointer, step: int, state, stopper: EarlyStopping):
    meta = {"best": stopper.best, "bad_evals": stopper.bad_evals, "step": step}
    if self.guard is not None:
      self.guard.check()  # raises before a non-finite update could be saved (stop mode)
      meta["nonfinite_skipped"] = self.guard.skipped
    meta["layouts"] = self.tables.layouts_meta()
    if jax.process_count() > 1:
      # The two managers' async saves run cross-process barriers in background threads; two
      # in flight at once can pair one process's barrier with the other's and deadlock.
      self.wait()
    which.save(step, state.replace(emb=self.tables.save_tree(state.emb)), meta)

  def after_eval(self, step: int, state, stopper: EarlyStopping, is_best: bool) -> None:
    if self.best is not None and is_best:
      self._save(self.best, step, state, stopper)

  def after_step(self, step: int, state, stopper: EarlyStopping, *, stopping: bool) -> None:
    """Saves the latest state every ``every`` steps and whenever the loop stops."""
    if self.latest is not None and (step % self.every == 0 or stopping):
      self._save(self.latest, step, state, stopper)

  def wait(self) -> None:
    for c in (self.latest, self.best):
      if c is not None:
        c.wait()


def init_tables_from(state: TrainState, path: str) -> TrainState:
  """Copies embedding tables (not optimizer slots) from another run's checkpoint.

  ``path`` is a workdir (its ``best/`` checkpoint is preferred, then
  ``checkpoints/``) or a checkpoint directory. Used by FNN to start from a
  trained FM's tables; the tables must have the same layout (features,
  embed_dim, first-order column).
  """
  path = os.path.abspath(os.path.expanduser(path))
  for sub in ("best", "checkpoints", ""):
    d = os.path.join(path, sub) if sub else path
    if os.path.isdir(d) and ckpt_lib.Checkpointer(d, async_save=False).latest_step() is not None:
      break
  else:
    raise ValueError(f"config.model_config.init_from_fm: no checkpoint under {path}")
  saved = ckpt_lib.Checkpointer(d, async_save=False).restore_leaves()
  emb = dict(state.emb)
  for stack, entry in emb.items():
    key = f".emb['{stack}']['table']"
    if key not in saved:
      raise ValueError(f"config.model_config.init_from_fm: {d} has no table {stack!r}")
    table = entry["table"]
    if saved[key].shape != table.shape:
      raise ValueError(
        f"config.model_config.init_from_fm: table {stack!r} is {saved[key].shape} in {d} but "
        f"{table.shape} here (same features and embed_dim needed)"
      )
    emb[stack] = dict(entry, table=jax.device_put(saved[key].astype(table.dtype), table.sharding))
  logging.info("initialised %d embedding stacks from %s", len(emb), d)
  return state.replace(emb=emb)
