"""Contract tests run on every registered model (and several configurations of some)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxctr import models
from tests.models.common import VARIANTS, B, build, make_inputs


def test_every_registered_model_has_a_variant():
  covered = {name for name, _ in VARIANTS.values()}
  assert set(models.registered()) <= covered, set(models.registered()) - covered


def _functional(model):
  """Splits once and returns a pure (params, rest, inputs, key, train) -> logits, as the trainer."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def apply(params, rest, inputs, key, train):
    # copy=True: without it, batch-norm statistics (in `rest`) cannot be updated under grad.
    m = nnx.merge(graphdef, params, rest, copy=True)
    logits = m(inputs, train=train, rngs=nnx.Rngs(dropout=key))
    return logits, nnx.state(m, nnx.Not(nnx.Param))  # updated batch stats, if any

  return params, rest, apply


# num_dense=0 is checked on one configuration per model (each test costs a compilation).
_FIRST_VARIANT = {}
for _v, (_name, _) in sorted(VARIANTS.items()):
  _FIRST_VARIANT.setdefault(_name, _v)
_CASES = [(v, 3) for v in sorted(VARIANTS)] + [(v, 0) for v in sorted(_FIRST_VARIANT.values())]


@pytest.mark.parametrize("variant,num_dense", _CASES)
def test_contract(variant, num_dense):
  """Shape [B], jit-able, finite, and every parameter gets a non-zero gradient."""
  name, cfg = VARIANTS[variant]
  model = build(name, cfg, num_dense=num_dense)
  inputs = make_inputs(name, cfg, num_dense=num_dense)
  params, rest, apply = _functional(model)
  labels = (jnp.arange(B) % 2).astype(jnp.float32)

  @jax.jit
  def step(params, rest, key):
    def loss(params):
      z, new_rest = apply(params, rest, inputs, key, True)
      return jnp.mean(jnp.logaddexp(0.0, z) - labels * z), new_rest

    (value, _), grads = jax.value_and_grad(loss, has_aux=True)(params)
    logits, _ = apply(params, rest, inputs, key, False)
    return logits, value, grads

  logits, value, grads = step(params, rest, jax.random.key(1))
  assert logits.shape == (B,)
  assert np.all(np.isfinite(np.asarray(logits)))
  assert np.isfinite(float(value))
  zero = [
    jax.tree_util.keystr(path)
    for path, g in jax.tree_util.tree_leaves_with_path(grads)
    if not np.any(np.asarray(g) != 0)
  ]
  assert not zero, f"{variant}: parameters without gradient: {zero}"
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("variant", ["deepfm", "autoint", "finalmlp", "dlrm"])
def test_inputs_get_gradients(variant):
  """Gradients flow back to the looked-up embeddings (the trainer's sparse update needs them)."""
  name, cfg = VARIANTS[variant]
  model = build(name, cfg)
  inputs = make_inputs(name, cfg)
  g = jax.grad(lambda fields: model(inputs.replace(fields=fields)).sum())(inputs.fields)
  assert np.all(np.abs(np.asarray(g)).sum(axis=(0, 2)) > 0)


def test_ffm_rejects_narrow_tables():
  model = build("ffm", {})
  inputs = make_inputs("fm", {})  # width D, not D*F
  with pytest.raises(ValueError, match="table_dim"):
    model(inputs)


def test_wide_deep_requires_cross_features():
  name, cfg = VARIANTS["wide_deep"]
  model = build(name, cfg)
  inputs = make_inputs(name, cfg)
  with pytest.raises(ValueError, match="cross_linear"):
    model(inputs.replace(sequences={}))
  # [B, P, 1] is accepted as well as [B, P].
  x = inputs.sequences["cross_linear"]
  a = model(inputs)
  b = model(inputs.replace(sequences={"cross_linear": x[..., None]}))
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_wide_deep_cross_weights_add_to_logit():
  name, cfg = VARIANTS["wide_deep"]
  model = build(name, cfg)
  inputs = make_inputs(name, cfg)
  x = inputs.sequences["cross_linear"]
  shifted = model(inputs.replace(sequences={"cross_linear": x + 1.0}))
  np.testing.assert_allclose(shifted - model(inputs), 2.0, rtol=1e-5)
