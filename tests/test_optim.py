"""gRDA against a numpy reference of its update, and the gate-only routing."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxctr import configs, optim


def _numpy_grda(w0, grads, lr, c, mu):
  """Reference: a_0 = w_0, a_t = a_{t-1} - lr g_t, w_t = S(a_t, c lr^(1/2+mu) t^mu)."""
  a, out = w0.astype(np.float64).copy(), []
  for t, g in enumerate(grads, start=1):
    a = a - lr * g
    thr = c * lr ** (0.5 + mu) * t**mu
    out.append(np.sign(a) * np.maximum(np.abs(a) - thr, 0.0))
  return out


def test_grda_matches_numpy_reference_including_exact_zeros():
  rng = np.random.default_rng(0)
  n, steps, lr, c, mu = 64, 300, 0.05, 1.0, 0.7
  w0 = rng.uniform(-0.5, 1.0, n).astype(np.float32)
  # Half the coordinates have a drift (signal), half only noise: the latter must hit zero.
  drift = np.where(np.arange(n) < n // 2, -0.2, 0.0)
  grads = [(drift + 0.3 * rng.normal(size=n)).astype(np.float32) for _ in range(steps)]
  ref = _numpy_grda(w0, grads, lr, c, mu)
  tx = optim.grda(lr, c, mu)
  params = {"gates": jnp.asarray(w0)}
  state = tx.init(params)
  step = jax.jit(tx.update)
  for t in range(steps):
    upd, state = step({"gates": jnp.asarray(grads[t])}, state, params)
    params = optax.apply_updates(params, upd)
    w = np.asarray(params["gates"])
    np.testing.assert_allclose(w, ref[t], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(w == 0, ref[t] == 0)  # the same exact zeros every step
  final = np.asarray(params["gates"])
  assert np.all(final[: n // 2] != 0) and np.mean(final[n // 2 :] == 0) > 0.8


def test_gate_optimizer_touches_gates_only():
  c = configs.base_config()
  c.optimizer.gates = "grda"
  c.optimizer.gate_learning_rate = 0.1
  c.optimizer.grda_c = 100.0  # threshold large enough to zero every gate at step 1
  tx = optim.with_gate_optimizer(optax.sgd(0.1), c)
  params = {"model": {"gates": jnp.ones(3), "w": jnp.ones(2)}}
  grads = jax.tree.map(jnp.ones_like, params)
  upd, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, upd)
  np.testing.assert_array_equal(new["model"]["gates"], 0.0)
  np.testing.assert_allclose(new["model"]["w"], 0.9)


def test_gate_optimizer_rejects_schedules_and_unknown_names():
  c = configs.base_config()
  assert optim.with_gate_optimizer(optax.sgd(0.1), c) is not None
  c.optimizer.gates = "grda"
  c.lr_schedule = "linear"
  with pytest.raises(ValueError, match="lr_schedule='constant'"):
    optim.with_gate_optimizer(optax.sgd(0.1), c)
  c.optimizer.gates = "rda"
  with pytest.raises(ValueError, match="config.optimizer.gates"):
    optim.with_gate_optimizer(optax.sgd(0.1), ml_collections.ConfigDict(c))
