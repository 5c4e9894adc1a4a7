"""Sparse (row-wise) optimizers for embedding tables.

Each optimizer works on the *gathered* rows a batch touches: it receives the
current rows ``w`` [U, D], their optimizer slots (same leading dimension) and the
per-row summed gradient ``g`` [U, D], and returns the new rows and slots. The
caller scatters them back with unique, sorted indices into donated buffers, so
the cost of a step depends on the number of distinct ids in the batch, never on
the vocabulary size.

Slots are stored beside the table rows (a [rows, D] or [rows, 1] array per
slot), so they shard and offload exactly like the table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxctr.embeddings import quantization
from jaxctr.embeddings.specs import OptimizerSpec, SpecError

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class SlotDef:
  """One optimizer slot: ``per_row`` slots have width 1, others the table's dim."""

  name: str
  per_row: bool
  init: Callable[[OptimizerSpec], float]


@dataclasses.dataclass(frozen=True)
class SparseOptimizer:
  name: str
  slots: tuple[SlotDef, ...]
  update: Callable[..., tuple[Array, dict[str, Array]]]


def _clip_and_decay(w, g, spec: OptimizerSpec, decoupled: bool):
  """Per-row gradient clipping, then coupled L2 (added to g) if not decoupled."""
  if spec.clip_norm > 0:
    norm = jnp.sqrt(jnp.sum(g * g, axis=-1, keepdims=True))
    g = g * jnp.minimum(1.0, spec.clip_norm / jnp.maximum(norm, 1e-12))
  if spec.weight_decay > 0 and not decoupled:
    g = g + spec.weight_decay * w
  return g


def _sgd(w, slots, g, step, spec):
  del step
  g = _clip_and_decay(w, g, spec, decoupled=False)
  return w - spec.learning_rate * g, slots


def _adagrad(w, slots, g, step, spec):
  """Per-coordinate Adagrad with optax's formula (rsqrt(acc + eps))."""
  del step
  g = _clip_and_decay(w, g, spec, decoupled=False)
  acc = slots["accumulator"] + g * g
  scale = jnp.where(acc > 0, jax.lax.rsqrt(acc + spec.eps), 0.0)
  return w - spec.learning_rate * g * scale, {"accumulator": acc}


def _rowwise_adagrad(w, slots, g, step, spec):
  """Row-wise Adagrad (FBGEMM/TorchRec): one accumulator per row, mean of g^2."""
  del step
  g = _clip_and_decay(w, g, spec, decoupled=False)
  acc = slots["accumulator"] + jnp.mean(g * g, axis=-1, keepdims=True)
  return w - spec.learning_rate * g / (jnp.sqrt(acc) + spec.eps), {"accumulator": acc}


def _adam_lazy(w, slots, g, step, spec):
  """Lazy Adam with PyTorch SparseAdam semantics.

  Only touched rows have their moments updated; bias correction uses the
  global step count, as SparseAdam does.
  """
  g = _clip_and_decay(w, g, spec, decoupled=True)
  t = step.astype(jnp.float32)
  m = spec.b1 * slots["m"] + (1.0 - spec.b1) * g
  v = spec.b2 * slots["v"] + (1.0 - spec.b2) * g * g
  lr_t = spec.learning_rate * jnp.sqrt(1.0 - spec.b2**t) / (1.0 - spec.b1**t)
  new_w = w - lr_t * m / (jnp.sqrt(v) + spec.eps)
  if spec.weight_decay > 0:
    new_w = new_w - spec.learning_rate * spec.weight_decay * w
  return new_w, {"m": m, "v": v}


def _adam(w, slots, g, step, spec):
  """Adam whose moments decay on every step, caught up lazily per row.

  The ``last_step`` slot is written as ``max(last, t)`` (= t) rather than a constant
  broadcast of t: a scattered value that does not depend on the gathered rows makes XLA
  copy the whole slot every step, O(vocabulary) instead of O(touched rows).

  A row untouched for k steps would, under dense Adam, have seen its moments
  decay by b1^k and b2^k; we store the step of each row's last update and
  apply that decay when the row is next touched. (Dense Adam would also keep
  moving an untouched row with its decaying momentum; those drift steps are
  not replayed, which is the standard sparse approximation.)
  """
  g = _clip_and_decay(w, g, spec, decoupled=True)
  t = step.astype(jnp.float32)
  last = slots["last_step"]
  gap = jnp.maximum(t - last - 1.0, 0.0)
  m = spec.b1 * (slots["m"] * spec.b1**gap) + (1.0 - spec.b1) * g
  v = spec.b2 * (slots["v"] * spec.b2**gap) + (1.0 - spec.b2) * g * g
  m_hat = m / (1.0 - spec.b1**t)
  v_hat = v / (1.0 - spec.b2**t)
  new_w = w - spec.learning_rate * m_hat / (jnp.sqrt(v_hat) + spec.eps)
  if spec.weight_decay > 0:
    new_w = new_w - spec.learning_rate * spec.weight_decay * w
  return new_w, {"m": m, "v": v, "last_step": jnp.maximum(last, t)}


def _ftrl(w, slots, g, step, spec):
  """FTRL-Proximal (McMahan et al., 2013, Algorithm 1), per coordinate.

  ``learning_rate`` is the paper's alpha, ``beta``/``l1``/``l2`` its beta/lambda1/lambda2.
  The weights are a closed-form function of the slots (z, n), so plain FTRL forgets a
  row's initial value on its first update (with beta = 1 and small gradients it shrinks
  it to about |g| * w). We keep the initial row as the centre of the first proximal term
  instead: on a coordinate's first update z also gets ``-(beta + n^p) / alpha * w``, so an
  unregularised first step moves w by ``-alpha * g / (beta + sqrt(n))`` from its init.
  For zero-initialised tables (the wide/linear parts FTRL is usually used for) this is
  exactly the paper's rule. A zero learning rate (schedules end at 0) leaves rows and
  slots unchanged instead of dividing by zero.
  """
  del step
  g = _clip_and_decay(w, g, spec, decoupled=False)
  n, z = slots["n"], slots["z"]
  lr = jnp.asarray(spec.learning_rate, jnp.float32)
  live = lr > 0
  alpha = jnp.where(live, lr, 1.0)
  p = -spec.lr_power
  n_new = n + g * g
  first = (z == 0) & (n == spec.initial_accumulator)
  sigma = (n_new**p - n**p + jnp.where(first, spec.beta + n**p, 0.0)) / alpha
  z_new = z + g - sigma * w
  denom = (spec.beta + n_new**p) / alpha + 2.0 * spec.l2
  new_w = jnp.where(jnp.abs(z_new) > spec.l1, (jnp.sign(z_new) * spec.l1 - z_new) / denom, 0.0)
  new_w = jnp.where(live, new_w, w).astype(w.dtype)
  return new_w, {"n": jnp.where(live, n_new, n), "z": jnp.where(live, z_new, z)}


_ZERO = lambda spec: 0.0
_ACC = lambda spec: spec.initial_accumulator

OPTIMIZERS: dict[str, SparseOptimizer] = {
  "sgd": SparseOptimizer("sgd", (), _sgd),
  "adagrad": SparseOptimizer("adagrad", (SlotDef("accumulator", False, _ACC),), _adagrad),
  "rowwise_adagrad": SparseOptimizer(
    "rowwise_adagrad", (SlotDef("accumulator", True, _ACC),), _rowwise_adagrad
  ),
  "adam_lazy": SparseOptimizer(
    "adam_lazy", (SlotDef("m", False, _ZERO), SlotDef("v", False, _ZERO)), _adam_lazy
  ),
  "adam": SparseOptimizer(
    "adam",
    (SlotDef("m", False, _ZERO), SlotDef("v", False, _ZERO), SlotDef("last_step", True, _ZERO)),
    _adam,
  ),
  "ftrl": SparseOptimizer("ftrl", (SlotDef("n", False, _ACC), SlotDef("z", False, _ZERO)), _ftrl),
}


def get(spec: OptimizerSpec, where: str = "") -> SparseOptimizer:
  """Returns the optimizer named by ``spec`` or raises naming ``where``."""
  if spec.name not in OPTIMIZERS:
    raise SpecError(
      f"{where}: unknown sparse optimizer {spec.name!r}; expected one of {sorted(OPTIMIZERS)}"
    )
  if spec.learning_rate < 0:
    raise SpecError(f"{where}: learning_rate must be >= 0, got {spec.learning_rate}")
  return OPTIMIZERS[spec.name]


def row_bytes(spec: OptimizerSpec, dtype: str, dim: int, *, slot_dim: int | None = None) -> int:
  """Stored bytes of one row: the table row (``dtype``, per-row int scale) and its slots.

  ``slot_dim`` is the width of full-width slots when it differs from ``dim`` (a column
  shard stores ``dim`` columns of the table but per-row slots whole).
  """
  width = dim if slot_dim is None else slot_dim
  slots = get(spec).slots
  return quantization.bytes_per_row(dtype, dim) + 4 * sum(1 if s.per_row else width for s in slots)
