"""Early stopping and reduce-on-plateau on a (weighted) validation metric.

The monitored value is one eval metric or a weighted sum of several, FuxiCTR's
``monitor: {AUC: 1, logloss: -1}``. In a config it is a string:

* ``"valid_auc"``: that metric alone;
* ``"valid_auc:1,valid_logloss:-1"``: ``1 * valid_auc - 1 * valid_logloss``.

``mode`` (max|min) applies to the combined value. An evaluation improves on the best one
only by more than ``min_delta`` (FuxiCTR: 1e-6). Why a combination: a model whose ranking
dips for an evaluation while its calibration still improves (common in the first epochs of
shallow models under an L2 penalty) is not cut short by AUC alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from absl import logging


def parse_monitor(monitor: str | Mapping[str, float]) -> dict[str, float]:
  """``"a:1,b:-1"`` / ``"a"`` / ``{"a": 1, "b": -1}`` -> ``{"a": 1.0, "b": -1.0}``."""
  if isinstance(monitor, Mapping):
    items = list(monitor.items())
  else:
    items = []
    for part in str(monitor).split(","):
      name, _, weight = part.strip().partition(":")
      try:
        items.append((name.strip(), float(weight) if weight.strip() else 1.0))
      except ValueError:
        raise ValueError(
          f"config.early_stopping.monitor: bad weight {weight!r} in {monitor!r}; "
          "expected e.g. 'valid_auc:1,valid_logloss:-1'"
        ) from None
  out = {str(k): float(v) for k, v in items}
  if not out or any(not k for k in out):
    raise ValueError(f"config.early_stopping.monitor: {monitor!r} names no metric")
  return out


class EarlyStopping:
  """Tracks the best monitored value and the evaluations since it.

  Args:
    monitor: A metric name, ``"name:weight,..."`` or a ``{name: weight}`` mapping.
    mode: ``max`` or ``min`` (of the combined value).
    patience: Evaluations without improvement before `should_stop`; 0 never stops.
    best: Best combined value so far (from a checkpoint), or None.
    bad_evals: Evaluations without improvement so far (from a checkpoint).
    min_delta: How much an evaluation must beat ``best`` by to count as an improvement.
  """

  def __init__(
    self,
    monitor,
    mode: str,
    patience: int,
    best=None,
    bad_evals: int = 0,
    min_delta: float = 0.0,
  ):
    if mode not in ("max", "min"):
      raise ValueError(f"config.early_stopping.mode must be 'max' or 'min', got {mode!r}")
    self.weights = parse_monitor(monitor)
    self.monitor = (
      monitor
      if isinstance(monitor, str)
      else ",".join(f"{k}:{v:g}" for k, v in self.weights.items())
    )
    self.mode, self.patience, self.min_delta = mode, patience, min_delta
    self.best, self.bad_evals = best, bad_evals

  def value(self, metrics: Mapping[str, float]) -> float:
    """The monitored (weighted) value of ``metrics``."""
    missing = sorted(set(self.weights) - set(metrics))
    if missing:
      raise ValueError(
        f"config.early_stopping.monitor: {missing} not among the eval metrics {sorted(metrics)}"
      )
    return float(sum(w * float(metrics[k]) for k, w in self.weights.items()))

  def update(self, metrics: Mapping[str, float]) -> bool:
    """Returns True if this evaluation is the best so far."""
    value = self.value(metrics)
    if self.best is None:
      better = True
    elif self.mode == "max":
      better = value > self.best + self.min_delta
    else:
      better = value < self.best - self.min_delta
    if better:
      self.best, self.bad_evals = value, 0
    else:
      self.bad_evals += 1
    return better

  @property
  def should_stop(self) -> bool:
    return self.patience > 0 and self.bad_evals >= self.patience


def plateau_factor(old_factor: float, stopper: EarlyStopping, config) -> float:
  """The learning-rate factor after an evaluation (FuxiCTR's ``reduce_lr_on_plateau``).

  Called once ``stopper`` has seen the evaluation: every ``lr_plateau.patience``
  evaluations without improvement multiply the factor by ``lr_plateau.factor``; it
  scales the dense and the sparse learning rates alike. ``lr_plateau.min_lr`` floors the
  dense rate, so the factor stops at ``min_lr / optimizer.learning_rate`` for the tables
  too. Returns ``old_factor`` when nothing changes.
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
