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
