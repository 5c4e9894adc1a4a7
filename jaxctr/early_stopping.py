"""Early stopping and the reduce-on-plateau learning-rate factor.

The training loop uses only `EarlyStopping(monitor, mode, patience, best, bad_evals)`,
its `update`, `should_stop`, `best` and `bad_evals`, and `plateau_factor`.
"""

from __future__ import annotations

from absl import logging


class EarlyStopping:
  """Tracks the best value of a monitored metric and evaluations without improvement."""

  def __init__(self, monitor: str, mode: str, patience: int, best=None, bad_evals: int = 0):
    if mode not in ("max", "min"):
      raise ValueError(f"config.early_stopping.mode must be 'max' or 'min', got {mode!r}")
    self.monitor, self.mode, self.patience = monitor, mode, patience
    self.best, self.bad_evals = best, bad_evals

  def update(self, metrics: dict[str, float]) -> bool:
    """Returns True if this evaluation is the best so far."""
    if self.monitor not in metrics:
      raise ValueError(
        f"config.early_stopping.monitor: {self.monitor!r} is not an eval metric; have {sorted(metrics)}"
      )
    value = metrics[self.monitor]
    better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
    if better:
      self.best, self.bad_evals = float(value), 0
    else:
      self.bad_evals += 1
    return better

  @property
  def should_stop(self) -> bool:
    return self.patience > 0 and self.bad_evals >= self.patience


def plateau_factor(old_factor: float, stopper: EarlyStopping, config) -> float:
  """The learning-rate factor after an evaluation that ``stopper`` has already seen.

  Every ``lr_plateau.patience`` evaluations without improvement multiply the factor by
  ``lr_plateau.factor``; it scales the dense and the sparse learning rates alike
  (FuxiCTR's ``reduce_lr_on_plateau`` with patience 1). ``lr_plateau.min_lr`` floors the
  dense rate; the factor stops at ``min_lr / optimizer.learning_rate`` for the tables too.

  Returns:
    The new factor (``old_factor`` when nothing changes).
  """
  cfg = config.lr_plateau
  patience = max(int(cfg.patience), 1)
  if cfg.factor == 1.0 or stopper.bad_evals == 0 or stopper.bad_evals % patience:
    return old_factor
  base = config.optimizer.learning_rate
  new = max(old_factor * cfg.factor, cfg.min_lr / base if base > 0 else 0.0)
  if new >= old_factor:
    return old_factor
  logging.info("reduce on plateau: learning-rate factor %g -> %g", old_factor, new)
  return new
