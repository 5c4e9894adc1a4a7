"""Optimizers for architecture parameters of interaction search: gRDA and a gate hook.

gRDA (generalised regularised dual averaging; Chao & Cheng, 2019) is the optimizer AutoFIS
trains its interaction gates with. It keeps the dual-averaging accumulator

  a_0 = w_0,    a_t = a_{t-1} - lr * g_t,

and sets the weights to the soft-thresholded accumulator

  w_t = sign(a_t) * max(|a_t| - c * lr^(1/2 + mu) * t^mu, 0).

The threshold grows with t (for mu > 0) while the accumulator of a useless gate only
random-walks, so such gates become exactly zero and stay there: that is how AutoFIS prunes.

`with_gate_optimizer` routes the dense parameters whose path has a component in
`GATE_NAMES` (a model's ``gates`` parameter) to gRDA and those in `ARCH_NAMES` to Adam at
``optimizer.arch_learning_rate``, through `optax.multi_transform`; every other dense
parameter keeps the configured optimizer.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

GATE_NAMES = ("gates",)  # parameter names trained by config.optimizer.gates
ARCH_NAMES = ("alpha",)  # architecture weights (OptInter): optimizer.arch_learning_rate


class GrdaState(NamedTuple):
  count: jax.Array  # steps taken, t
  accum: jax.Array | optax.Params  # the dual-averaging accumulator a_t, one per leaf


def grda(learning_rate: float, c: float = 0.005, mu: float = 0.51) -> optax.GradientTransformation:
  """gRDA as an optax transformation (needs ``params`` in ``update``).

  Args:
    learning_rate: Step size lr (constant: the threshold is defined for a constant lr).
    c: Sparsity strength; 0 gives plain dual averaging (SGD from w_0).
    mu: Growth exponent of the threshold, in (0.5, 1) in the paper.

  Returns:
    A transformation whose update moves each leaf to its thresholded accumulator, so
    `optax.apply_updates` yields the gRDA weights (exact zeros where thresholded).
  """
  lr = float(learning_rate)
  if lr <= 0 or c < 0 or mu < 0:
    raise ValueError(
      f"gRDA needs learning_rate > 0, c >= 0 and mu >= 0, got {learning_rate}, {c}, {mu}"
    )

  def init_fn(params):
    # A copy: the accumulator must not alias the parameters (the train step donates both).
    return GrdaState(
      jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.array(p, copy=True), params)
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("grda: update() needs params")
    count = state.count + 1
    accum = jax.tree.map(lambda a, g: a - lr * g, state.accum, updates)
    thr = c * lr ** (0.5 + mu) * count.astype(jnp.float32) ** mu

    def move(a, w):
      new = jnp.sign(a) * jnp.maximum(jnp.abs(a) - thr.astype(a.dtype), 0.0)
      return (new - w).astype(w.dtype)  # w + (0 - w) is exactly 0 in floating point

    return jax.tree.map(move, accum, params), GrdaState(count, accum)

  return optax.GradientTransformation(init_fn, update_fn)


def gate_labels(params):
  """``"gates"``/``"arch"`` for leaves under a `GATE_NAMES`/`ARCH_NAMES` component, else
  ``"default"``."""

  def label(path, _):
    names = {str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", "")))) for k in path}
    if names & set(GATE_NAMES):
      return "gates"
    return "arch" if names & set(ARCH_NAMES) else "default"

  return jax.tree_util.tree_map_with_path(label, params)


def with_gate_optimizer(tx: optax.GradientTransformation, config) -> optax.GradientTransformation:
  """`tx` for the dense parameters, gRDA for the gates when ``config.optimizer.gates`` asks.

  Args:
    tx: The dense optimizer (`jaxctr.train.make_optimizer`).
    config: The run's config; reads ``optimizer.gates`` (""|"grda"), ``gate_learning_rate``,
      ``grda_c``, ``grda_mu`` and checks that nothing rescales gRDA's steps.

  Returns:
    `tx` unchanged when no gate optimizer is configured.
  """
  opt = config.optimizer
  if not opt.gates and not opt.arch_learning_rate:
    return tx
  # Architecture weights: Adam at their own rate (OptInter's separate architecture optimizer).
  arch_tx = optax.adam(opt.arch_learning_rate) if opt.arch_learning_rate else tx
  if not opt.gates:
    return optax.multi_transform({"default": tx, "gates": tx, "arch": arch_tx}, gate_labels)
  if opt.gates != "grda":
    raise ValueError(f"config.optimizer.gates: unknown {opt.gates!r}; expected '' or 'grda'")
  # The trainer multiplies every update by the schedule factor; gRDA's update is a move to a
  # thresholded point, so a factor != 1 would leave gates off that point (and off zero).
  if config.lr_schedule != "constant" or config.lr_plateau.factor != 1.0:
    raise ValueError(
      "config.optimizer.gates='grda' needs config.lr_schedule='constant' and "
      "config.lr_plateau.factor=1 (gRDA's threshold assumes a constant learning rate)"
    )
  gate_tx = grda(opt.gate_learning_rate, opt.grda_c, opt.grda_mu)
  return optax.multi_transform({"default": tx, "gates": gate_tx, "arch": arch_tx}, gate_labels)
