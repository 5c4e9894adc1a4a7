"""Loads experiment config files (``path[:arg]``) outside of absl flags.

``python -m jaxctr.main --config=...`` loads configs through ``ml_collections``'
config flags; notebooks, benchmarks and tests use :func:`load` to get exactly the
same locked ``ConfigDict`` from the same ``path:arg`` string, with dotted
overrides applied the way ``--config.a.b=value`` would apply them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from typing import Any

import ml_collections


def _checkout_root(path: str) -> str | None:
  """The folder holding ``experiments/`` above ``path`` (so ``experiments.*`` imports work)."""
  d = os.path.dirname(path)
  while d and d != os.path.dirname(d):
    if os.path.basename(d) == "experiments":
      return os.path.dirname(d)
    d = os.path.dirname(d)
  return None


def load(spec: str, overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of ``spec`` (``"experiments/synthetic/fm.py:smoke"``).

  Args:
    spec: A config file path, optionally followed by ``:arg`` for its
      ``get_config(arg)``. Relative paths are resolved against the working
      directory.
    overrides: Dotted keys to set, e.g. ``{"embedding.method": "qr"}``; a key
      the config does not declare raises ``KeyError`` naming it.

  Raises:
    FileNotFoundError: ``spec`` names no file.
    KeyError: An override names an undeclared key.
  """
  path, _, arg = spec.partition(":")
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (from {spec!r})")
  root = _checkout_root(path)
  if root and root not in sys.path:  # experiment files import experiments.* helpers
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location(f"_jaxctr_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  config.lock()
  for key, value in (overrides or {}).items():
    target = config
    *parents, last = key.split(".")
    try:
      for p in parents:
        target = target[p]
      if last not in target:
        raise KeyError(last)
    except (KeyError, AttributeError):
      raise KeyError(f"config override {key!r}: {spec} declares no such key") from None
    if isinstance(target[last], ml_collections.ConfigDict) and isinstance(value, Mapping):
      target[last] = ml_collections.ConfigDict(dict(value))
    else:
      target[last] = value
  return config
