"""Command-line conveniences of `jaxctr.main`: configs from any folder, quiet library logs.

* `add_config_import_paths`: an experiment file such as
  `experiments/behaviour/synthetic_din.py` imports `experiments.behaviour.common`, which
  Python only finds when the folder above
  `experiments/` is on `sys.path` (it is the working directory when run from the checkout
  root, and nothing otherwise). The folder above every `experiments` ancestor of the
  `--config` file is appended to `sys.path` before the flag parser loads it.
* `exit_on_peer_failure`: in a multi-process job a killed process makes the others' next
  collective fail (gloo: "connection reset by peer", within seconds) or their heartbeat
  time out (`--heartbeat_timeout_seconds`). Each survivor then logs one clear line and
  exits at once, instead of a long JAX traceback followed by an abort in the shutdown
  barrier; restarting all processes resumes from the latest checkpoint.
* `quiet_library_logs`: at the default `--verbosity=0` only jaxctr's own INFO lines (the
  workdir, the sharding plan, evaluations) and every library's warnings and errors reach the
  log; libraries' INFO chatter (orbax writes dozens of lines per checkpoint) and TFDS's
  preparation progress bars appear from `--verbosity=1` on.
"""

from __future__ import annotations

import contextlib
import functools
import logging as std_logging
import os
import sys
from collections.abc import Sequence

from absl import flags, logging

_PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


def config_path(argv: Sequence[str]) -> str | None:
  """The file of `--config=path[:arg]` (or `--config path[:arg]`) in `argv`, if any."""
  for i, a in enumerate(argv):
    if a.startswith("--config="):
      value = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return value.split(":", 1)[0]  # the ':arg' suffix (e.g. ':smoke', ':/data/criteo')
  return None


def add_config_import_paths(argv: Sequence[str]) -> list[str]:
  """Appends to `sys.path` the folder above each `experiments` ancestor of the config file."""
  path = config_path(argv)
  added: list[str] = []
  if not path:
    return added
  d = os.path.dirname(os.path.realpath(path))
  while True:
    parent = os.path.dirname(d)
    if os.path.basename(d) == "experiments" and parent not in sys.path:
      sys.path.append(parent)  # appended: never shadows an installed module
      added.append(parent)
    if parent == d:
      return added
    d = parent


@functools.lru_cache(maxsize=1024)
def _is_jaxctr(pathname: str) -> bool:
  return os.path.realpath(pathname).startswith(_PACKAGE_DIR)


class _LibraryInfoFilter(std_logging.Filter):
  """Drops INFO (and DEBUG) records from outside jaxctr below `--verbosity=1`."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    if _is_jaxctr(record.pathname):
      return True
    return _verbosity() >= 1


def _verbosity() -> int:
  return flags.FLAGS.verbosity if flags.FLAGS.is_parsed() else 0


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (idempotent); hides TFDS's bars by default."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
  if _verbosity() < 1:
    import tensorflow_datasets as tfds  # jaxctr.data imports it anyway

    tfds.disable_progress_bar()


@contextlib.contextmanager
def exit_on_peer_failure(multiprocess: bool, workdir: str):
  """Turns a failed collective of a multi-process job into one log line and exit code 3."""
  import jax

  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if not multiprocess:
      raise
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    logging.error(
      "process %d: a collective failed (%s); another process of this job has probably "
      "stopped. Stopping this one too; start all processes again to resume from the latest "
      "checkpoint in %s",
      jax.process_index(),
      first[:300],
      os.path.join(workdir, "checkpoints"),
    )
    logging.flush()
    sys.stderr.flush()
    # Skips jax.distributed's shutdown barrier, which would wait for the lost process and
    # then abort with a C++ stack trace.
    os._exit(3)


def user_errors() -> tuple[type[BaseException], ...]:
  """Errors about the user's input, config or machine, whose message says what to change.

  `jaxctr.main` prints them as one line (exit code 2) instead of a traceback, unless
  ``--verbosity=1``. Imported here, after `jax.distributed` is up (some pull in TFDS).
  """
  from jaxctr import bounds, checkpoint, configs, disk, guards
  from jaxctr.data import storage
  from jaxctr.embeddings import cache_policy, planner, specs

  return (
    configs.ConfigKeyError,
    specs.SpecError,
    planner.PlanError,
    storage.DataError,
    bounds.ResourceError,
    disk.DiskSpaceError,
    cache_policy.CacheTooSmallError,
    checkpoint.CheckpointError,
    guards.NonFiniteError,
  )
