"""Non-finite loss and gradient guard: stop at the first bad step, or skip such batches.

Inside the jitted train step `step_flags` computes a few booleans (loss finite, per
parameter group gradients finite, per numeric feature inputs finite); with
`config.on_nonfinite = "skip"` `keep_if_finite` then discards the whole update of a bad
step (parameters, optimizer slots, tables) except the step counter, which still advances
so that batches and schedules stay aligned with an uninterrupted run.

On the host `NonFiniteMonitor` collects the flags without reading them (no extra device
sync per step) and `check()` reads them where the loop synchronises anyway: at the log
interval, before every checkpoint save and at the end. In stop mode the first bad step
raises `NonFiniteError` naming the step, the batch index, the loss, the parameter groups
with non-finite gradients and the numeric features with NaN/inf inputs; since `check()`
runs before each save, no checkpoint ever holds a bad update and the last good one stays.
In skip mode bad batches are counted (the count is saved in checkpoint metadata) and the
first few are logged.

Cost: the flags are O(batch + parameters) reductions. Skip mode selects between the old
and the new state, which reads every table once per step (O(table), unlike the sparse
update); stop mode selects nothing.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

MODES = ("stop", "skip")
MAX_LOGGED = 5


class NonFiniteError(FloatingPointError):
  """Training produced a NaN/inf loss or gradient."""


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise ValueError(f"config.on_nonfinite: {mode!r}; expected one of {MODES}")
  return mode


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]
  return jnp.stack(leaves).all() if leaves else jnp.ones((), bool)


def step_flags(loss, dense_grads, row_grads: dict[str, Any], batch) -> dict[str, jax.Array]:
  """Finiteness flags of one step (traced): `finite` and what `NonFiniteMonitor` reports.

  Args:
    loss: The scalar loss.
    dense_grads: Gradients of the dense parameters (any pytree).
    row_grads: Gradients of the gathered embedding rows, by stack name.
    batch: The device batch (`num`, if present, is checked per column).
  """
  flags = {"loss_finite": jnp.isfinite(loss), "grad_finite/dense": _all_finite(dense_grads)}
  for name, g in row_grads.items():
    flags[f"grad_finite/{name}"] = _all_finite(g)
  num = batch.get("num")
  if num is not None and num.shape[-1]:
    flags["num_finite"] = jnp.isfinite(num).all(axis=0)
  ok = flags["loss_finite"]
  for k, v in flags.items():
    if k.startswith("grad_finite/"):
      ok = ok & v
  flags["finite"] = ok
  return flags


def keep_if_finite(finite, new_state, old_state, advance=("step",)):
  """`new_state` if `finite`, else `old_state` except the `advance` fields (traced).

  Works on the typed train state (a dataclass pytree with ``replace``). The select reads
  every leaf, tables included, so it costs a pass over the state per step.
  """
  kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new_state, old_state)
  return kept.replace(**{k: getattr(new_state, k) for k in advance})


class NonFiniteMonitor:
  """Host side: keeps each step's flags (device arrays) and reads them in `check()`.

  Args:
    mode: `stop` or `skip` (`config.on_nonfinite`).
    numeric_names: Names of the columns of `batch["num"]`.
    steps_per_epoch: For the batch index within its epoch.
    stack_features: Feature names per embedding stack, to name a table's features.
    skipped: Batches skipped before (a resumed run's checkpoint metadata).
  """

  def __init__(
    self,
    mode: str,
    numeric_names=(),
    steps_per_epoch: int = 0,
    stack_features: dict[str, tuple[str, ...]] | None = None,
    skipped: int = 0,
  ):
    self.mode = check_mode(mode)
    self.numeric_names = tuple(numeric_names)
    self.steps_per_epoch = steps_per_epoch
    self.stack_features = stack_features or {}
    self.skipped = int(skipped)
    self._pending: list[tuple[int, dict[str, jax.Array]]] = []

  def record(self, step: int, out: dict[str, Any]) -> None:
    """Keeps step `step`'s flags from the step's outputs (no device sync)."""
    if "finite" in out:
      self._pending.append((step, {k: v for k, v in out.items() if "finite" in k}))

  def check(self) -> int:
    """Reads the pending flags; raises on a bad step (stop) or counts them (skip)."""
    pending, self._pending = self._pending, []
    if not pending:
      return self.skipped
    oks = np.asarray(jax.device_get(jnp.stack([f["finite"] for _, f in pending])))
    for i in np.flatnonzero(~oks):
      step, flags = pending[int(i)]
      msg = self.describe(step, jax.device_get(flags))
      if self.mode == "stop":
        raise NonFiniteError(
          f"{msg}. Training stopped; no checkpoint holds this update (the last saved one is "
          "kept). Set config.on_nonfinite='skip' to skip such batches."
        )
      self.skipped += 1
      if self.skipped <= MAX_LOGGED:
        logging.warning("skipped batch: %s (%d skipped so far)", msg, self.skipped)
    return self.skipped

  def describe(self, step: int, flags: dict[str, Any]) -> str:
    """Words for one bad step: where it is and what was not finite."""
    batch = step - 1  # step s applied the s-th batch
    where = f"step {step} (batch {batch}"
    if self.steps_per_epoch:
      e, b = divmod(batch, self.steps_per_epoch)
      where = f"step {step} (epoch {e + 1}, batch {b} of the epoch"
    parts = [f"non-finite {'loss' if not flags['loss_finite'] else 'gradient'} at {where})"]
    groups = []
    for k, v in flags.items():
      if k.startswith("grad_finite/") and not bool(v):
        name = k.split("/", 1)[1]
        feats = self.stack_features.get(name)
        groups.append(f"table {name} ({', '.join(feats)})" if feats else name)
    if groups:
      parts.append("non-finite gradients of " + ", ".join(groups))
    if "num_finite" in flags:
      bad = [
        self.numeric_names[j] if j < len(self.numeric_names) else f"num[{j}]"
        for j in np.flatnonzero(~np.asarray(flags["num_finite"]))
      ]
      if bad:
        parts.append("NaN/inf in numeric feature(s) " + ", ".join(bad))
    return "; ".join(parts)
