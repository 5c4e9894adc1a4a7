"""Meshes and logical-axis sharding rules.

A *recipe* (a file in the repository's ``sharding/`` folder) declares only what
differs from the defaults below: ``MESH_AXES`` (name, size), ``RULES`` (logical
axis -> mesh axis or None, merged over `DEFAULT_RULES` by axis) and ``STRATEGY``
(the default table placement). The logical axes are ``batch`` (the global batch),
``table_shard`` (what sharded tables are split over; the same devices as
``batch``) and, for ``table_row_wise``, ``row_group`` (the devices that split one
table's rows). Arrays are annotated with logical axes only; this module turns
those into `NamedSharding`s for a concrete mesh, so a model never names a mesh axis.

Meshes use `AxisType.Auto` (GSPMD propagation): the trainer places inputs and
state explicitly and lets XLA propagate shardings through the step, which
avoids the explicit ``out_sharding`` every gather from a sharded table would
need under explicit axis types.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

_RECIPE_DIRS = (
  os.path.join(os.getcwd(), "sharding"),
  os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "sharding"),
)


DEFAULT_MESH_AXES = (("data", -1),)  # every device on one data axis
DEFAULT_RULES = (("batch", "data"), ("table_shard", "data"))
DEFAULT_STRATEGY = "data_parallel"


@dataclasses.dataclass(frozen=True)
class Recipe:
  name: str
  mesh_axes: tuple[tuple[str, int], ...]
  rules: tuple[tuple[str, str | tuple[str, ...] | None], ...]
  strategy: str = "data_parallel"  # default table strategy (sharded strategies: see planner)


def load_recipe(name: str) -> Recipe:
  """Loads ``sharding/<name>.py`` (or a path to a recipe file)."""
  candidates = (
    [name] if name.endswith(".py") else [os.path.join(d, name + ".py") for d in _RECIPE_DIRS]
  )
  for path in candidates:
    if os.path.isfile(path):
      spec = importlib.util.spec_from_file_location(f"jaxctr_recipe_{abs(hash(path))}", path)
      mod = importlib.util.module_from_spec(spec)
      spec.loader.exec_module(mod)
      mesh_axes = tuple(getattr(mod, "MESH_AXES", DEFAULT_MESH_AXES))
      rules = dict(DEFAULT_RULES)
      rules.update(dict(getattr(mod, "RULES", ())))
      strategy = getattr(mod, "STRATEGY", DEFAULT_STRATEGY)
      return Recipe(name, mesh_axes, tuple(rules.items()), strategy)
  raise ValueError(f"config.sharding: no recipe {name!r}; looked for {candidates}")


def make_mesh(recipe: Recipe, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over ``devices`` (default: all) with the recipe's axes."""
  devices = list(devices if devices is not None else jax.devices())
  names = [a for a, _ in recipe.mesh_axes]
  sizes = [s for _, s in recipe.mesh_axes]
  known = math.prod(s for s in sizes if s != -1)
  if sizes.count(-1) > 1:
    raise ValueError(f"sharding recipe {recipe.name!r}: at most one mesh axis may be -1")
  sizes = [len(devices) // known if s == -1 else s for s in sizes]
  if math.prod(sizes) != len(devices):
    raise ValueError(
      f"sharding recipe {recipe.name!r}: mesh {dict(zip(names, sizes))} needs "
      f"{math.prod(sizes)} devices, have {len(devices)}"
    )
  arr = np.asarray(devices, dtype=object).reshape(sizes)
  return Mesh(arr, tuple(names), axis_types=(AxisType.Auto,) * len(names))


def logical_to_spec(logical_axes: Sequence[str | None], rules) -> PartitionSpec:
  table = dict(rules)
  out = []
  for ax in logical_axes:
    if ax is not None and ax not in table:
      raise ValueError(f"logical axis {ax!r} has no sharding rule; rules: {sorted(table)}")
    out.append(None if ax is None else table[ax])
  return PartitionSpec(*out)


def sharding(mesh: Mesh, rules, logical_axes: Sequence[str | None]) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(logical_axes, rules))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def as_axes(rule) -> tuple[str, ...]:
  """A rule's mesh axes as a tuple (None -> ())."""
  if rule is None:
    return ()
  return (rule,) if isinstance(rule, str) else tuple(rule)


def put_global(x, mesh: Mesh, spec: PartitionSpec | None = None) -> jax.Array:
  """A global array from a host value that every process holds in full.

  Each process materialises only the slices its own devices hold, so the same
  call works on one host and on many.
  """
  s = NamedSharding(mesh, spec if spec is not None else PartitionSpec())
  if jax.process_count() == 1:
    # One process: a direct transfer. For arrays already on a device this avoids a host copy
    # (a 26 x 1M x 17 table with Adam slots would otherwise be held 2-3 times at once).
    return jax.device_put(x, s)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])


def put_batch(tree, mesh: Mesh, rules):
  """Global host batch (every process holds all of it) -> arrays split along the batch axis."""
  spec = logical_to_spec(("batch",), rules)
  return jax.tree.map(lambda x: put_global(x, mesh, spec), tree)


def put_replicated(tree, mesh: Mesh):
  """Host arrays that every process holds in full -> replicated global arrays."""
  return jax.tree.map(lambda x: put_global(x, mesh), tree)


def process_rows(mesh: Mesh, rules, global_rows: int) -> tuple[int, int, int]:
  """(first, stop, slices) of the global batch's rows held by this process's devices.

  Per-process input reads only these rows, so they must be one contiguous range split
  evenly over the process's devices (``slices`` of them, in mesh order), with process ``p``
  holding the ``p``-th range: then the global batch is the processes' slices concatenated
  in process order, as with one process.

  Raises:
    ValueError: when the batch sharding gives this process another set of rows.
  """
  s = NamedSharding(mesh, logical_to_spec(("batch",), rules))
  got = set()
  for idx in s.addressable_devices_indices_map((global_rows,)).values():
    sl = idx[0]
    got.add((sl.start or 0, global_rows if sl.stop is None else sl.stop))
  spans = sorted(got)
  lo, hi = spans[0][0], spans[-1][1]
  contiguous = all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
  local = len(mesh.local_devices)
  if not contiguous or len(spans) != local or lo != jax.process_index() * (hi - lo):
    raise ValueError(
      f"the batch sharding gives process {jax.process_index()} rows {spans} of "
      f"{global_rows}; per-process input needs one range per process, in process order, "
      f"split over its {local} devices"
    )
  return lo, hi, len(spans)


def put_local_batch(tree, mesh: Mesh, rules):
  """This process's rows of a global batch (`process_rows`) -> arrays split along the batch.

  Every leaf's leading axis is this process's part of the global leading axis, so the
  global arrays are the processes' parts concatenated in process order.
  """
  s = NamedSharding(mesh, logical_to_spec(("batch",), rules))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(s, np.asarray(x)), tree)
