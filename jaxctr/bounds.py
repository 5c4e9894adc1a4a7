"""Refuses, before anything is allocated, a run whose tables and batches cannot fit.

Without this check a config with too many table rows (or a huge batch) fails minutes in,
as an allocation error deep in XLA or as the kernel's OOM killer ending the process
without a word. `check_fits` adds up what the planner places on each device (tables,
optimizer slots and lookup buffers, `planner.Plan.per_device`) and the input batches in
flight, and compares that with what the devices have: `bytes_limit` of accelerators, and
for CPU devices (which all share host memory) the host's available memory. The estimate
is a lower bound (activations are not counted), so only runs that surely cannot fit are
refused, with the numbers and the config keys that change them.
"""

from __future__ import annotations

import os

GiB = float(1 << 30)


class ResourceError(ValueError):
  """The config needs more memory than the machine has."""


def available_host_bytes() -> int | None:
  """MemAvailable of /proc/meminfo (Linux), else free physical pages; None if unknown."""
  try:
    with open("/proc/meminfo") as fh:
      for line in fh:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return None


def batch_bytes(config, num_categorical: int, num_numeric: int) -> int:
  """Host-and-device bytes of the input batches in flight (ids, numbers, labels)."""
  per_example = 4 * (num_categorical + num_numeric + 1)
  in_flight = max(config.prefetch, 1) + 2  # queued, being transferred, in the step
  return per_example * max(config.batch_size * in_flight, config.eval_batch_size)


def check_fits(per_device: list[int], devices, batch: int, host_bytes: int | None = None):
  """Raises `ResourceError` if the tables (`per_device` bytes) and batches cannot fit.

  Args:
    per_device: Planned bytes per device (tables, slots, lookup buffers).
    devices: The mesh's devices, in the order of `per_device`.
    batch: Bytes of the batches in flight (`batch_bytes`), spread over the devices.
    host_bytes: Available host memory (default: `available_host_bytes()`).
  """
  devices = list(devices)
  n = max(len(devices), 1)
  if all(d.platform == "cpu" for d in devices):
    have = available_host_bytes() if host_bytes is None else host_bytes
    need = sum(per_device) + batch
    if have is not None and need > have:
      raise ResourceError(
        f"this config needs at least {need / GiB:.2f} GiB of host memory (embedding tables "
        f"and optimizer slots {sum(per_device) / GiB:.2f} GiB over {n} CPU device(s), input "
        f"batches {batch / GiB:.2f} GiB) but {have / GiB:.2f} GiB is available. Use fewer "
        "table rows (embedding.method=hashing/qr, dataset min_count), a smaller batch_size, "
        "fewer devices for replicated tables (num_devices, embedding.strategy=row_wise) or "
        "offload with offload.disk_dir"
      )
    return
  for d, used in zip(devices, per_device, strict=False):
    stats = d.memory_stats() or {}
    limit = stats.get("bytes_limit")
    need = used + batch // n
    if limit and need > limit:
      raise ResourceError(
        f"device {d} needs at least {need / GiB:.2f} GiB (tables and optimizer slots "
        f"{used / GiB:.2f} GiB, input batches {batch / n / GiB:.2f} GiB) but has "
        f"{limit / GiB:.2f} GiB. Shard the tables (embedding.strategy=row_wise or auto with "
        "embedding.device_memory_budget), use fewer rows, a smaller batch_size, or offload"
      )


def check_trainer(trainer) -> None:
  """`check_fits` for a built `train.Trainer` (before its state is initialised)."""
  feats = trainer.features
  ncat = sum(f.kind != "numeric" for f in feats)
  batch = batch_bytes(trainer.config, ncat, len(feats) - ncat)
  check_fits(list(trainer.plan.per_device), trainer.mesh.devices.flat, batch)
