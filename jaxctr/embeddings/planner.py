"""Chooses where each table lives: a sharding strategy or the host-offload cache.

Inputs per logical table: its size (`TableCost`: rows, dim, stored bytes per row with
optimizer slots) and its load (`TableLoad`: ids looked up per step, from the batch size
and the pooling width of its features). With ``n`` devices, every placement has

- **bytes per device** (`estimate`): the whole table (``data_parallel``), its packed
  share (``table_wise``, ``table_row_wise``), 1/n of it (``row_wise``, ``column_wise``),
  or 1/n of its device cache (``offload``); plus the step's lookup buffers;
- **a step cost** (`step_cost`), in bytes moved on the busiest device per step:
  rows exchanged between devices (forward rows and backward gradients; every pair's
  buffer is padded to the busiest pair's count, as `sharded.route` does), rows read and
  written where they are stored (at least a 64-byte line each), a fixed cost per
  collective, and for ``offload`` the rows that miss the cache crossing the host link.

Ids are assumed Zipf(1) over each vocabulary ranked by frequency (preprocessing numbers
ids by descending count), which gives the expected distinct ids per step and how many of
them fall in the hottest 1/n of the rows (what a ``row_wise`` range shard holds). So a
wide, hot table goes ``column_wise`` (every device serves 1/n of every row: no hot
shard), a narrow one ``row_wise`` (a column slice would still cost a whole line), a
small one stays replicated (collectives cost more than it saves).

``strategy="auto"``: each unpinned table takes its cheapest placement; then, while a
device is over ``budget``, the move that frees memory at the least added cost per byte
(offload included) is made. Any other default strategy: unpinned tables start there and
the largest movable table moves down ``data_parallel -> table_wise -> row_wise ->
offload`` until everything fits. User pins always win. When nothing fits the planner
refuses, naming the need and the budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from jaxctr.embeddings import optimizers
from jaxctr.embeddings.sharded import STRATEGIES, _pack
from jaxctr.embeddings.specs import TableSpec

OFFLOAD = "offload"
PLACEMENTS = STRATEGIES + (OFFLOAD,)
LADDER = ("data_parallel", "table_wise", "row_wise", OFFLOAD)
LINE_BYTES = 64  # a row read or write costs at least one cache line / DMA burst
COLLECTIVE_BYTES = 256 << 10  # fixed cost of one collective, in bytes-equivalent
HOST_LINK_FACTOR = 8  # a byte over the host link costs this many bytes of device traffic
# An offload cache pins the rows of the batches in flight (prefetch depth + 1): it must hold
# several batches' distinct rows, or the cache policy refuses the batch.
CACHE_BATCHES = 4


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
  column_ok: bool = True  # column_wise supports its dtype and optimizer

  @property
  def bytes(self) -> int:
    return self.rows * self.row_bytes


@dataclasses.dataclass(frozen=True)
class TableLoad:
  """One table's lookups per training step (global batch)."""

  ids_per_step: int  # batch size x pooling width of the features that read the table


@dataclasses.dataclass(frozen=True)
class CacheSpec:
  """Device cache of an offloaded table (``config.offload.cache_fraction`` / ``cache_rows``)."""

  fraction: float = 0.1
  rows: int = 0

  def slots(self, rows: int) -> int:
    return int(min(max(self.rows or math.ceil(self.fraction * rows), 1), rows))


def table_costs(
  physical: Sequence[TableSpec], logical_of=lambda n: n.split("/")[0]
) -> list[TableCost]:
  """Per logical table, the summed cost of its physical tables (encoders split some)."""
  out: dict[str, TableCost] = {}
  for t in physical:
    row = optimizers.row_bytes(t.optimizer, t.dtype, t.dim)
    col_ok = not t.dtype.startswith("int") and t.optimizer.name != "rowwise_adagrad"
    col_ok = col_ok and not t.optimizer.clip_norm > 0
    name = logical_of(t.name)
    prev = out.get(name)
    rows = t.vocab_size + (prev.rows if prev else 0)
    total = t.vocab_size * row + (prev.bytes if prev else 0)
    col_ok = col_ok and (prev.column_ok if prev else True)
    out[name] = TableCost(
      name, rows, t.dim, t.dtype, t.optimizer.name, max(total // rows, 1), col_ok
    )
  return list(out.values())


def table_loads(collection, batch_size: int) -> dict[str, TableLoad]:
  """Ids per step of every logical table of an (unsharded) `EmbeddingCollection`."""
  width: dict[str, int] = {}
  for f in collection.features:
    name = f.table_name.split("/")[0]
    width[name] = width.get(name, 0) + f.width
  return {n: TableLoad(batch_size * w) for n, w in width.items()}


# ------------------------------------------------------------- Zipf(1) ids
def _zipf_distinct(rows: int, draws: float, lo: int = 0, hi: int | None = None) -> float:
  """Expected distinct ranks in [lo, hi) among ``draws`` Zipf(1) draws over ``rows`` ranks."""
  hi = rows if hi is None else hi
  if draws <= 0 or hi <= lo:
    return 0.0
  harmonic = np.log(rows) + 0.5772 + 1.0 / (2 * rows)
  edges = np.unique(np.geomspace(lo + 1, hi + 1, 64).astype(np.int64))  # rank buckets
  edges[0], edges[-1] = lo + 1, hi + 1
  total = 0.0
  for a, b in zip(edges[:-1], edges[1:]):
    mid = np.sqrt(a * (b - 1.0)) if b - 1 > a else float(a)
    p = 1.0 / (mid * harmonic)
    total += (b - a) * -np.expm1(draws * np.log1p(-min(p, 1.0 - 1e-12)))
  return float(min(total, hi - lo, draws))


def _zipf_mass(rows: int, k: int) -> float:
  """Share of Zipf(1) draws landing on the ``k`` hottest of ``rows`` ranks."""
  if k >= rows:
    return 1.0
  h = lambda m: np.log(m) + 0.5772 + 1.0 / (2 * m)
  return float(h(k) / h(rows))


def step_cost(c: TableCost, strategy: str, n: int, load: TableLoad | None, cache: CacheSpec):
  """Bytes moved per step on the busiest device by table ``c`` placed with ``strategy``."""
  if load is None or load.ids_per_step == 0:
    ids = 0
  else:
    ids = load.ids_per_step
  line = lambda nbytes: max(nbytes, LINE_BYTES)
  emb = 4 * c.dim  # fp32 row (and gradient) on the wire
  U = _zipf_distinct(c.rows, ids)  # distinct rows of the global batch
  u = _zipf_distinct(c.rows, ids / n)  # of one device's slice
  if n == 1 or strategy == "data_parallel":
    allreduce = 2 * U * emb * (n - 1) / n  # the rows' gradients, summed over devices
    return allreduce + 2 * U * line(c.row_bytes) + (COLLECTIVE_BYTES if n > 1 else 0)
  collectives = 2 * COLLECTIVE_BYTES  # one all_to_all forward, one backward
  if strategy == "column_wise":
    k = u  # every pair exchanges the requester's distinct rows, 1/n of each
    exchange = 2 * (n - 1) * k * emb / n
    local = 2 * U * line(c.row_bytes / n)
    return exchange + local + collectives
  if strategy == "table_wise":
    k, owned = u, U  # the owner serves everyone
  elif strategy == "table_row_wise":
    k, owned = u, U / max(n // 2, 1)
  else:  # row_wise / offload caches: the hottest range shard sets the padded pair size
    k = _zipf_distinct(c.rows, ids / n, 0, -(-c.rows // n))
    owned = _zipf_distinct(c.rows, ids, 0, -(-c.rows // n))
    if strategy == OFFLOAD:  # slots are spread over the shards as they are assigned
      k, owned = u / n, U / n
  exchange = 2 * (n - 1) * k * emb
  local = 2 * owned * line(c.row_bytes)
  cost = exchange + local + collectives
  if strategy == OFFLOAD:
    misses = U * (1.0 - _zipf_mass(c.rows, cache.slots(c.rows)))
    cost += HOST_LINK_FACTOR * 2 * misses * c.row_bytes / n  # rows in, evicted rows out
    cost += HOST_LINK_FACTOR * COLLECTIVE_BYTES  # a host round trip per step, however small
  return cost


@dataclasses.dataclass
class Plan:
  """Where every logical table lives, with the estimates that chose it."""

  strategies: dict[str, str]
  per_device: list[int]  # estimated bytes per device, lookup buffers included
  lookup_bytes: int
  costs: list[TableCost]
  budget: int
  step_bytes: dict[str, float] = dataclasses.field(default_factory=dict)

  def table(self) -> str:
    """The plan as a fixed-width text table."""
    lines = [
      f"{'table':<16}{'rows':>12}{'dim':>5}{'dtype':>9}{'optimizer':>16}{'MiB':>10}"
      f"{'step MiB':>10}  strategy"
    ]
    for c in sorted(self.costs, key=lambda c: -c.bytes):
      lines.append(
        f"{c.name:<16}{c.rows:>12,}{c.dim:>5}{c.dtype:>9}{c.optimizer:>16}"
        f"{c.bytes / 2**20:>10.2f}{self.step_bytes.get(c.name, 0.0) / 2**20:>10.3f}  "
        f"{self.strategies[c.name]}"
      )
    mib = ", ".join(f"{b / 2**20:.2f}" for b in self.per_device)
    budget = f"{self.budget / 2**20:.2f} MiB" if self.budget else "unlimited"
    lines.append(f"per-device MiB (incl. {self.lookup_bytes / 2**20:.2f} lookup): [{mib}]")
    lines.append(f"budget per device: {budget}")
    return "\n".join(lines)

  def to_json(self) -> dict:
    return {
      "placements": self.strategies,
      "bytes_per_device": self.per_device,
      "lookup_bytes": self.lookup_bytes,
      "budget": self.budget,
      "step_bytes": self.step_bytes,
      "tables": [dataclasses.asdict(c) for c in self.costs],
    }

  def save(self, workdir: str) -> None:
    """Writes ``plan.json`` and the readable ``plan.txt`` into ``workdir``."""
    with open(os.path.join(workdir, "plan.json"), "w") as f:
      json.dump(self.to_json(), f, indent=2)
    with open(os.path.join(workdir, "plan.txt"), "w") as f:
      f.write(self.table() + "\n")


def estimate(
  costs: Sequence[TableCost],
  strategies: Mapping[str, str],
  num_devices: int,
  *,
  group_size: int = 0,
  lookup_bytes: int = 0,
  cache: CacheSpec = CacheSpec(),
) -> list[int]:
  """Bytes per device of a placement (the same packing as `sharded.make_layout`)."""
  n = num_devices
  per = np.full(n, lookup_bytes, np.int64)
  by = {s: [c for c in costs if strategies[c.name] == s] for s in PLACEMENTS}
  for c in by["data_parallel"]:
    per += c.bytes
  for c in by["row_wise"] + by["column_wise"]:
    per += -(-c.bytes // n)
  for c in by[OFFLOAD]:  # the cache is split row-wise over the devices
    per += -(-cache.slots(c.rows) * c.row_bytes // n)
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


def _check(costs, pins, default) -> str:
  names = {c.name for c in costs}
  for name, s in pins.items():
    if name not in names:
      raise PlanError(
        f"config.embedding.per_table_strategy: no table {name!r}; tables: {sorted(names)}"
      )
    if s not in PLACEMENTS:
      raise PlanError(
        f"config.embedding.per_table_strategy[{name!r}]: {s!r} not in {list(PLACEMENTS)}"
      )
  if default != "auto" and default not in STRATEGIES:
    raise PlanError(f"config.embedding.strategy: {default!r} not in {list(STRATEGIES) + ['auto']}")
  return default


def plan(
  costs: Sequence[TableCost],
  num_devices: int,
  *,
  default: str = "data_parallel",
  pins: Mapping[str, str] | None = None,
  budget: int = 0,
  group_size: int = 0,
  lookup_bytes: int | None = None,
  loads: Mapping[str, TableLoad] | None = None,
  cache: CacheSpec = CacheSpec(),
) -> Plan:
  """Placements for ``costs`` on ``num_devices`` devices within ``budget`` bytes each.

  Args:
    costs: The logical tables (see `table_costs`).
    num_devices: Devices the tables may be split over.
    default: Placement of unpinned tables; "auto" chooses per table by `step_cost`.
    pins: Placements users fixed per table; never changed.
    budget: Bytes per device; 0 means unlimited.
    group_size: Devices per group of ``table_row_wise``.
    lookup_bytes: Per-device buffers of one step's lookups (None: from ``loads``).
    loads: Ids per step of every table (see `table_loads`); none: no traffic estimate.
    cache: Device cache size of offloaded tables.

  Raises:
    PlanError: When no placement fits.
  """
  pins = dict(pins or {})
  default = _check(costs, pins, default)
  loads = dict(loads or {})
  n = num_devices
  if n == 1:  # one device: every strategy is the same layout (offload still differs)
    pins = {k: v for k, v in pins.items() if v == OFFLOAD}
    default = "data_parallel"
  if lookup_bytes is None:
    ids = sum(v.ids_per_step for v in loads.values())
    lookup_bytes = 4 * ids * max((c.dim for c in costs), default=0) * 4 // n
  cost = lambda c, s: step_cost(c, s, n, loads.get(c.name), cache)

  def options(c):
    out = [s for s in STRATEGIES if s != "table_row_wise" and (s != "column_wise" or c.column_ok)]
    ids = loads[c.name].ids_per_step if c.name in loads else 0
    if cache.slots(c.rows) >= CACHE_BATCHES * _zipf_distinct(c.rows, ids):
      out.append(OFFLOAD)
    return out

  if default == "auto":
    strategies = {
      c.name: pins.get(c.name)
      or min((s for s in options(c) if s != OFFLOAD), key=lambda s: (cost(c, s), s))
      for c in costs
    }
  else:
    strategies = {c.name: pins.get(c.name, default) for c in costs}

  def per_device(st=None):
    return estimate(
      costs, st or strategies, n, group_size=group_size, lookup_bytes=lookup_bytes, cache=cache
    )

  while budget and max(per := per_device()) > budget:
    move = None
    if default == "auto":  # the move freeing memory at the least added cost per byte
      best = None
      for c in costs:
        if c.name in pins:
          continue
        for s in options(c):
          trial = dict(strategies, **{c.name: s})
          freed = max(per) - max(per_device(trial))
          if freed <= 0:
            continue
          price = (cost(c, s) - cost(c, strategies[c.name])) / freed
          if best is None or price < best:
            best, move = price, (c.name, s)
    else:
      movable = [
        c
        for c in sorted(costs, key=lambda c: -c.bytes)
        if c.name not in pins and strategies[c.name] in LADDER[:-1]
      ]
      if movable:
        c = movable[0]
        move = (c.name, LADDER[LADDER.index(strategies[c.name]) + 1])
    if move is None:
      raise PlanError(
        f"no sharding plan fits config.embedding.device_memory_budget={budget:,} bytes per "
        f"device: the best placement needs {max(per):,} bytes on some device "
        f"(tables {sum(c.bytes for c in costs):,} bytes over {n} devices, "
        f"lookup buffers {lookup_bytes:,}); use more devices, smaller tables "
        "(hashing/qr/int8), or a smaller host-offload cache (config.offload)"
      )
    strategies[move[0]] = move[1]
  step_bytes = {c.name: cost(c, strategies[c.name]) for c in costs}
  result = Plan(strategies, per_device(), lookup_bytes, list(costs), budget, step_bytes)
  logging.info("embedding placement plan:\n%s", result.table())
  return result
