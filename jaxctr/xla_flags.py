"""XLA:CPU flags that jaxctr sets before JAX starts its CPU backend.

Imported by ``jaxctr/__init__.py``, so importing jaxctr before running any JAX
computation is enough. Flags only take effect if the backend has not started
yet; a flag the user already set in ``XLA_FLAGS`` is never overridden, and
``JAXCTR_XLA_DEFAULTS=0`` turns this off.

* ``--xla_cpu_experimental_ynn_fusion_type=`` (empty: off). jaxlib 0.10 routes
  fp32 dots through YNNPACK fusions by default; on AMD EPYC (AVX2) machines
  XLA's Eigen dots are faster, for a single product and for the DeepFM MLP's
  whole step (``experiments/README.md``, "Figures behind design choices"). Only
  set for the jaxlib versions it was measured on: XLA aborts on flags it does
  not know.
"""

from __future__ import annotations

import importlib.metadata
import os

_MEASURED_JAXLIB = ("0.10.",)  # XLA rejects unknown flags: only versions known to have it
_DEFAULTS = {"--xla_cpu_experimental_ynn_fusion_type": ""}


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""


def apply(environ=os.environ) -> list[str]:
  """Appends jaxctr's default XLA:CPU flags to ``XLA_FLAGS``; returns those added."""
  if environ.get("JAXCTR_XLA_DEFAULTS", "1") == "0":
    return []
  if not _jaxlib_version().startswith(_MEASURED_JAXLIB):
    return []
  current = environ.get("XLA_FLAGS", "")
  added = [f"{k}={v}" for k, v in _DEFAULTS.items() if k not in current]
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added
