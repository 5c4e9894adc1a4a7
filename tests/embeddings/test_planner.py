"""The placement planner's cost model: its choices on its own, and its plan files."""

import json

import pytest

from jaxctr.embeddings import planner as P

N = 8


def _tables():
  costs = [
    P.TableCost("wide_hot", 100_000, 128, "float32", "adam", 128 * 4 * 3),
    P.TableCost("small", 1_000, 16, "float32", "adam", 16 * 4 * 3),
  ]
  loads = {"wide_hot": P.TableLoad(4096 * 20), "small": P.TableLoad(4096)}  # 20 ids per example
  return costs, loads


def test_wide_hot_table_goes_column_wise_small_one_stays_replicated():
  costs, loads = _tables()
  p = P.plan(costs, N, default="auto", loads=loads)
  assert p.strategies == {"wide_hot": "column_wise", "small": "data_parallel"}
  wide = costs[0]
  cost = {s: P.step_cost(wide, s, N, loads["wide_hot"], P.CacheSpec()) for s in P.STRATEGIES}
  assert min(cost, key=cost.get) == "column_wise"
  assert cost["row_wise"] > 2 * cost["column_wise"]  # the hot range shard pads every exchange


def test_table_that_cannot_fit_is_offloaded_and_pins_win():
  costs, loads = _tables()
  costs.append(P.TableCost("huge", 50_000_000, 16, "float32", "adam", 16 * 4 * 3))
  loads["huge"] = P.TableLoad(4096)
  budget = 600 << 20  # the huge table row-wise would need 1.2 GB per device
  p = P.plan(costs, N, default="auto", loads=loads, budget=budget)
  assert p.strategies["huge"] == "offload"
  assert p.strategies["wide_hot"] == "column_wise"
  assert max(p.per_device) <= budget
  p = P.plan(costs, N, default="auto", loads=loads, pins={"wide_hot": "row_wise"}, budget=budget)
  assert p.strategies["wide_hot"] == "row_wise"
  with pytest.raises(P.PlanError, match="device_memory_budget"):
    P.plan(costs, N, default="auto", loads=loads, pins={"huge": "row_wise"}, budget=budget)


def test_plan_is_saved_as_json_and_text(tmp_path):
  costs, loads = _tables()
  P.plan(costs, N, default="auto", loads=loads).save(str(tmp_path))
  saved = json.loads((tmp_path / "plan.json").read_text())
  assert saved["placements"]["wide_hot"] == "column_wise"
  assert len(saved["bytes_per_device"]) == N and saved["step_bytes"]["small"] > 0
  text = (tmp_path / "plan.txt").read_text()
  assert "wide_hot" in text and "column_wise" in text and "budget per device" in text
