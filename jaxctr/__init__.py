"""jaxctr: CTR prediction in JAX with first-class embedding tables."""

from jaxctr import xla_flags as _xla_flags

_xla_flags.apply()  # before JAX starts its CPU backend (see jaxctr/xla_flags.py)
