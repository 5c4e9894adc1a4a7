"""jaxctr's default XLA:CPU flags: added once, never over the user's, and in effect."""

import jax
import jax.numpy as jnp

from jaxctr import xla_flags


def test_apply_appends_respects_user_flags_and_opt_out(monkeypatch):
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: "0.10.2")
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_flags.apply(env) == ["--xla_cpu_experimental_ynn_fusion_type="]
  assert env["XLA_FLAGS"].split() == [
    "--xla_force_host_platform_device_count=8",
    "--xla_cpu_experimental_ynn_fusion_type=",
  ]
  assert xla_flags.apply(env) == []  # already there
  user = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=dot"}
  assert xla_flags.apply(user) == [] and user["XLA_FLAGS"].endswith("=dot")
  off = {"JAXCTR_XLA_DEFAULTS": "0"}
  assert xla_flags.apply(off) == [] and "XLA_FLAGS" not in off
  monkeypatch.setattr(xla_flags, "_jaxlib_version", lambda: "0.99.0")  # unknown: untouched
  assert xla_flags.apply({}) == []


def test_dots_compile_without_ynn_fusions():
  # The test process imported jaxctr before starting JAX, as users do.
  f = jax.jit(lambda a, w: jax.nn.relu(a @ w))
  hlo = f.lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile().as_text()
  assert " dot(" in hlo and "%ynn_fusion" not in hlo  # (the test name is in the metadata)
