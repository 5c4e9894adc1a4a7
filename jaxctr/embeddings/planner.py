"""Chooses a sharding strategy per table under a per-device memory budget.

Given the tables (rows, dim, dtype, optimizer slots), the number of devices
and a per-device budget, `plan` returns one strategy per logical table and the
estimated bytes per device: table rows, optimizer slots, offload caches and the
lookup buffers of a step. Users pin strategies for any table; the rest start
from the default strategy and, while some device is over budget, the largest
movable table moves one rung down the ladder

    data_parallel -> table_wise -> row_wise

(replicated, then whole on one device, then split over all). When every
movable table is row-wise and a device is still over budget the planner
refuses, naming the need and the budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from jaxctr.embeddings import optimizers, quantization
from jaxctr.embeddings.sharded import STRATEGIES, _pack
from jaxctr.embeddings.specs import TableSpec

LADDER = ("data_parallel", "table_wise", "row_wise")


class PlanError(ValueError):
  """No placement of the tables fits the per-device budget."""


@dataclasses.dataclass(frozen=True)
class TableCost:
  """What one logical table stores: its physical tables' rows and bytes per row."""

  name: str
  rows: int
  dim: int
  dtype: str
  optimizer: str
  row_bytes: int  # table + optimizer slots

  @property
  def bytes(self) -> int:
    return self.rows * self.row_bytes


def table_costs(
  physical: Sequence[TableSpec], logical_of=lambda n: n.split("/")[0]
) -> list[TableCost]:
  """Per logical table, the summed cost of its physical tables (encoders split some)."""
  out: dict[str, TableCost] = {}
  for t in physical:
    slots = optimizers.get(t.optimizer).slots
    row = quantization.bytes_per_row(t.dtype, t.dim) + 4 * sum(
      1 if s.per_row else t.dim for s in slots
    )
    name = logical_of(t.name)
    prev = out.get(name)
    rows = t.vocab_size + (prev.rows if prev else 0)
    total = t.vocab_size * row + (prev.bytes if prev else 0)
    out[name] = TableCost(name, rows, t.dim, t.dtype, t.optimizer.name, max(total // rows, 1))
  return list(out.values())


@dataclasses.dataclass
class Plan:
  strategies: dict[str, str]
  per_device: list[int]  # estimated bytes per device, lookup buffers included
  lookup_bytes: int
  costs: list[TableCost]
  budget: int

  def table(self) -> str:
    """The plan as a fixed-width text table."""
    lines = [
      f"{'table':<16}{'rows':>12}{'dim':>5}{'dtype':>9}{'optimizer':>16}{'MiB':>10}  strategy"
    ]
    for c in sorted(self.costs, key=lambda c: -c.bytes):
      lines.append(
        f"{c.name:<16}{c.rows:>12,}{c.dim:>5}{c.dtype:>9}{c.optimizer:>16}"
        f"{c.bytes / 2**20:>10.2f}  {self.strategies[c.name]}"
      )
    mib = ", ".join(f"{b / 2**20:.2f}" for b in self.per_device)
    budget = f"{self.budget / 2**20:.2f} MiB" if self.budget else "unlimited"
    lines.append(f"per-device MiB (incl. {self.lookup_bytes / 2**20:.2f} lookup): [{mib}]")
    lines.append(f"budget per device: {budget}")
    return "\n".join(lines)


def estimate(
  costs: Sequence[TableCost],
  strategies: Mapping[str, str],
  num_devices: int,
  *,
  group_size: int = 0,
  lookup_bytes: int = 0,
) -> list[int]:
  """Bytes per device of a placement (the same packing as `sharded.make_layout`)."""
  n = num_devices
  per = np.full(n, lookup_bytes, np.int64)
  by = {s: [c for c in costs if strategies[c.name] == s] for s in STRATEGIES}
  for c in by["data_parallel"]:
    per += c.bytes
  for c in by["row_wise"] + by["column_wise"]:
    per += -(-c.bytes // n)
  tw = by["table_wise"]
  if tw:  # one stacked array: every device stores as many rows as the fullest one
    load = np.zeros(n, np.int64)
    for c, d in zip(tw, _pack([c.rows for c in tw], n)):
      load[d] += c.bytes
    per += load.max()
  trw = by["table_row_wise"]
  if trw:
    g = group_size or n
    load = np.zeros(n // g, np.int64)
    for c, grp in zip(trw, _pack([c.rows for c in trw], n // g)):
      load[grp] += -(-c.bytes // g)
    per += load.max()
  return per.tolist()


def plan(
  costs: Sequence[TableCost],
  num_devices: int,
  *,
  default: str = "data_parallel",
  pins: Mapping[str, str] | None = None,
  budget: int = 0,
  group_size: int = 0,
  lookup_bytes: int = 0,
) -> Plan:
  """Strategies for ``costs`` on ``num_devices`` devices within ``budget`` bytes each.

  Args:
    costs: The logical tables (see `table_costs`).
    num_devices: Devices the tables may be split over.
    default: Strategy of unpinned tables before the budget moves them ("auto":
      data_parallel).
    pins: Strategies users fixed per table; never changed.
    budget: Bytes per device; 0 means unlimited (no table moves).
    group_size: Devices per group of ``table_row_wise``.
    lookup_bytes: Per-device buffers of one step's lookups (rows, exchange, gradients).

  Raises:
    PlanError: When no placement within the ladder fits.
  """
  pins = dict(pins or {})
  names = {c.name for c in costs}
  for name, s in pins.items():
    if name not in names:
      raise PlanError(
        f"config.embedding.per_table_strategy: no table {name!r}; tables: {sorted(names)}"
      )
    if s not in STRATEGIES:
      raise PlanError(
        f"config.embedding.per_table_strategy[{name!r}]: {s!r} not in {list(STRATEGIES)}"
      )
  start = "data_parallel" if default == "auto" else default
  if start not in STRATEGIES:
    raise PlanError(f"config.embedding.strategy: {default!r} not in {list(STRATEGIES) + ['auto']}")
  strategies = {c.name: pins.get(c.name, start) for c in costs}

  def per_device():
    return estimate(
      costs, strategies, num_devices, group_size=group_size, lookup_bytes=lookup_bytes
    )

  while budget and max(per := per_device()) > budget:
    movable = [
      c
      for c in sorted(costs, key=lambda c: -c.bytes)
      if c.name not in pins and strategies[c.name] in LADDER and strategies[c.name] != LADDER[-1]
    ]
    if not movable:
      raise PlanError(
        f"no sharding plan fits config.embedding.device_memory_budget={budget:,} bytes per "
        f"device: the best placement needs {max(per):,} bytes on some device "
        f"(tables {sum(c.bytes for c in costs):,} bytes over {num_devices} devices, "
        f"lookup buffers {lookup_bytes:,}); use more devices, smaller tables "
        "(hashing/qr/int8), or the host-offload cache (config.offload)"
      )
    c = movable[0]
    strategies[c.name] = LADDER[LADDER.index(strategies[c.name]) + 1]
  result = Plan(strategies, per_device(), lookup_bytes, list(costs), budget)
  logging.info("embedding sharding plan:\n%s", result.table())
  return result
