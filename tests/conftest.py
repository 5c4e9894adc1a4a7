"""Test setup: 8 fake CPU devices, set before JAX is imported anywhere.

The collective timeouts are raised because CI runs 8 fake devices on 2 cores
(with 2 pytest workers): under that oversubscription a device thread can wait
its turn for longer than XLA's default 40 s rendezvous limit, and XLA then
aborts the process instead of raising.
"""

import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "")
  + " --xla_force_host_platform_device_count=8"
  + " --xla_cpu_collective_call_terminate_timeout_seconds=1200"
  + " --xla_cpu_collective_timeout_seconds=1200"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402 - after the environment above


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One TFDS data_dir per test run: the tiny synthetic dataset is prepared once, on first use."""
  return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, model="deepfm", **kw):
  """A small, fast training config on the tiny synthetic dataset; ``kw`` sets dotted keys."""
  from jaxctr import configs, models
  from tests.common import override

  c = configs.base_config()
  c.dataset.data_dir = data_dir
  c.dataset.builder_kwargs = {"config": "tiny"}
  c.model = model
  if "hidden" in models.get_model_class(model).HPARAMS:
    c.model_config.hidden = (16, 16)
  c.embed_dim = 8
  c.batch_size = 512
  c.eval_batch_size = 2048
  c.total_steps = 24
  c.eval_every_steps = 8
  c.log_every_steps = 4
  c.progress_bar = False
  c.checkpoint.async_save = True
  c.num_devices = 1  # multi-device runs are tested explicitly
  return override(c, kw)
