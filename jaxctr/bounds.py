"""Refuses, before anything is allocated, a run whose tables and batches cannot fit.

Without this check a config with too many table rows (or a huge batch) fails minutes in,
as an allocation error deep in XLA or as the kernel's OOM killer ending the process
without a word. `check_fits` adds up what the planner places on each device (tables,
optimizer slots and lookup buffers, `planner.Plan.per_device`) and the input batches in
flight, and compares that with what the devices have: `bytes_limit` of accelerators, and
for CPU devices (which all share host memory) the host's available memory. The estimate
is a lower bound (activations are not counted), so only runs that surely cannot fit are
refused, with the numbers and the config keys that change them.

Offloaded tables keep every row and optimizer slot in a host store, in RAM or in
memory-mapped files under `config.offload.disk_dir`, which is allocated and initialised
while the tables are built. `check_host_stores` therefore runs on the plan, before that:
a store larger than the available memory would otherwise end the process through the OOM
killer during its initialisation, and one larger than the disk's free space as a
`disk.DiskSpaceError` only after the stores before it were written.
"""

from __future__ import annotations

import os

from jaxctr import disk
from jaxctr.embeddings import planner

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


def _free_disk_bytes(directory: str) -> int:
  """Free bytes where `directory` is (or will be created), plus what its `.npy` files hold.

  The host stores' files are re-created (truncated) when the tables are built, so the
  blocks of earlier ones count as free; counting every `.npy` file there errs on the side
  of not refusing.
  """
  d = os.path.abspath(directory)
  while not os.path.isdir(d) and os.path.dirname(d) != d:
    d = os.path.dirname(d)
  free = disk.free_bytes(d)
  if os.path.isdir(directory):
    for name in os.listdir(directory):
      path = os.path.join(directory, name)
      if name.endswith(".npy") and os.path.isfile(path):
        free += os.stat(path).st_blocks * 512
  return free


def check_host_stores(
  plan,
  offload_cfg,
  devices,
  host_bytes: int | None = None,
  disk_bytes: int | None = None,
  checkpoints: bool = True,
) -> None:
  """Raises `ResourceError` if the offloaded tables' host stores cannot fit.

  Args:
    plan: The tables' `planner.Plan` (placements and per-table bytes, optimizer slots
      included); called before the tables are built.
    offload_cfg: `config.offload` (its `disk_dir`).
    devices: The mesh's devices: on CPU devices the device caches and tables share host
      memory with the stores.
    host_bytes: Available host memory (default: `available_host_bytes()`).
    disk_bytes: Free bytes under `offload_cfg.disk_dir` (default: measured).
    checkpoints: The run saves checkpoints: a save copies each store on disk beside it
      first (`HostStore.snapshot`), so `disk_dir` needs room for two.
  """
  stores = [c for c in plan.costs if plan.strategies.get(c.name) == planner.OFFLOAD]
  need = sum(c.bytes for c in stores)
  if not need:
    return
  biggest = max(stores, key=lambda c: c.bytes)
  what = (
    f"the host stores of {len(stores)} offloaded table(s) (rows and optimizer slots; largest "
    f"{biggest.name}: {biggest.rows:,} rows x {biggest.row_bytes} bytes = "
    f"{biggest.bytes / GiB:.2f} GiB) need {need / GiB:.2f} GiB"
  )
  disk_dir = os.path.expanduser(offload_cfg.disk_dir)
  if disk_dir:
    have = _free_disk_bytes(disk_dir) if disk_bytes is None else disk_bytes
    copies = 2 if checkpoints else 1
    if copies * need > have:
      twice = f" ({copies * need / GiB:.2f} GiB with a checkpoint's copy)" if checkpoints else ""
      raise ResourceError(
        f"{what}{twice} in config.offload.disk_dir={disk_dir} but {have / GiB:.2f} GiB is "
        "free there. Point offload.disk_dir at a larger disk, or use fewer rows "
        "(embedding.method=hashing/qr, dataset min_count) or a slot-free optimizer "
        "(embedding.optimizer=sgd)"
      )
    return
  have = available_host_bytes() if host_bytes is None else host_bytes
  on_cpu = all(d.platform == "cpu" for d in devices)
  device = sum(plan.per_device) if on_cpu else 0  # caches and tables in the same memory
  if have is not None and need + device > have:
    also = f" (and the CPU devices' tables and caches {device / GiB:.2f} GiB)" if device else ""
    raise ResourceError(
      f"{what} of host memory{also} but {have / GiB:.2f} GiB is available. Set "
      "config.offload.disk_dir to keep them in memory-mapped files on disk, or use fewer rows "
      "(embedding.method=hashing/qr, dataset min_count)"
    )
