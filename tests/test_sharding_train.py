"""Sharded tables through the training script: equality with one device, planner, resharding."""

import json

import jax
import numpy as np
import pytest

from jaxctr import train
from jaxctr.embeddings import planner
from tests.test_train import _config


def _virtual_emb(result, trainer_like_cfg):
  """Final tables in the virtual layout, whatever the mesh."""
  t = train.Trainer(trainer_like_cfg)
  return t.collection.unshard_state(result["final_state"]["emb"])


def _cfg(data_dir, **kw):
  base = {"total_steps": 20, "eval_every_steps": 20, "checkpoint.enabled": False}
  base.update(kw)
  return _config(data_dir, **base)


@pytest.fixture(scope="module")
def single(data_dir, tmp_path_factory):
  cfg = _cfg(data_dir)
  res = train.train_and_evaluate(cfg, str(tmp_path_factory.mktemp("one")))
  return cfg, res


# tests/embeddings/test_sharded.py compares every strategy's outputs, gradients and tables
# with one device over 20 steps; here two go through the whole training script (the other
# placements do in the planner, checkpoint and offload tests below).
@pytest.mark.parametrize("recipe,kw", [("column_wise", {}), ("table_row_wise", {})])
def test_every_strategy_trains_like_one_device(data_dir, tmp_path, single, recipe, kw):
  cfg1, res1 = single
  cfg = _cfg(data_dir, sharding=recipe, num_devices=8, **kw)
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert abs(res["test_auc"] - res1["test_auc"]) < 2e-5
  assert abs(res["test_logloss"] - res1["test_logloss"]) < 2e-5
  got, want = _virtual_emb(res, cfg), _virtual_emb(res1, cfg1)
  for name in want:
    for k in want[name]:
      np.testing.assert_allclose(got[name][k], want[name][k], rtol=1e-5, atol=1e-6)
  # Tables really are split: some device holds less than the whole stack.
  entry = next(iter(res["final_state"]["emb"].values()))
  shards = entry["table"].addressable_shards
  assert len(shards) == 8 and shards[0].data.nbytes < entry["table"].nbytes


def test_planner_shards_tables_over_budget_and_trains(data_dir, tmp_path, single):
  cfg = _cfg(data_dir, num_devices=8, **{"embedding.strategy": "auto"})
  full = train.Trainer(cfg).collection.num_bytes()
  cfg.embedding.device_memory_budget = full // 2  # the tables cannot be replicated
  t = train.Trainer(cfg)
  assert set(t.plan.strategies.values()) - {"data_parallel"}  # something moved
  assert max(t.plan.per_device) <= full // 2
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert abs(res["test_auc"] - single[1]["test_auc"]) < 2e-5  # the same model as on one device
  held = [0] * 8
  for entry in res["final_state"]["emb"].values():
    for arr in entry.values():
      for i, s in enumerate(arr.addressable_shards):
        held[i] += s.data.nbytes
  assert max(held) <= full // 2 < full
  cfg.embedding.strategy = "data_parallel"
  cfg.embedding.per_table_strategy = {n: "data_parallel" for n in t.plan.strategies}
  with pytest.raises(planner.PlanError, match="device_memory_budget"):
    train.Trainer(cfg)


def test_planner_pins_and_errors():
  costs = [planner.TableCost(f"t{i}", 1000 * (i + 1), 8, "float32", "sgd", 32) for i in range(4)]
  p = planner.plan(costs, 4, default="auto", pins={"t0": "column_wise"}, budget=200_000)
  assert p.strategies["t0"] == "column_wise"
  assert max(p.per_device) <= 200_000
  assert "strategy" in p.table() and "t3" in p.table()
  with pytest.raises(planner.PlanError, match="no table 'zz'"):
    planner.plan(costs, 4, pins={"zz": "row_wise"})
  with pytest.raises(planner.PlanError, match="not in"):
    planner.plan(costs, 4, pins={"t1": "diagonal"})
  with pytest.raises(planner.PlanError, match="needs"):
    planner.plan(costs, 4, budget=1000)


def test_checkpoint_restores_onto_other_meshes(data_dir, tmp_path):
  """8 -> 4 -> 1 and 1 -> 8 devices: identical predictions (test metrics)."""
  wd = str(tmp_path / "run")
  ck = {"checkpoint.enabled": True}
  c8 = _cfg(data_dir, sharding="row_wise", num_devices=8, total_steps=16, eval_every_steps=8, **ck)
  part = train.train_and_evaluate(c8, wd, stop_at_step=8)
  assert part["preempted"]
  # Resume the same run on 4 devices (mod placement, another layout), then evaluate on 1.
  c4 = _cfg(
    data_dir,
    sharding="row_wise",
    num_devices=4,
    total_steps=16,
    eval_every_steps=8,
    **{"embedding.row_placement": "mod"},
  )
  r4 = train.train_and_evaluate(c4, wd)
  c1 = _cfg(data_dir, num_devices=1, total_steps=16, eval_every_steps=8, **ck)
  r1 = train.train_and_evaluate(c1, wd)  # nothing left to train: restores and evaluates
  assert r1["step"] == 16
  assert abs(r1["test_auc"] - r4["test_auc"]) < 1e-6
  ref = train.train_and_evaluate(
    _cfg(data_dir, num_devices=1, total_steps=16, eval_every_steps=8, **ck), str(tmp_path / "ref")
  )
  assert abs(ref["test_auc"] - r4["test_auc"]) < 2e-5
  # 1 -> 8: a single-device checkpoint continues on a row-sharded mesh.
  r8 = train.train_and_evaluate(
    _cfg(data_dir, sharding="table_wise", num_devices=8, total_steps=16, eval_every_steps=8, **ck),
    str(tmp_path / "ref"),
  )
  assert abs(r8["test_auc"] - ref["test_auc"]) < 1e-6
  jax.clear_caches()


def test_offloaded_tables_beside_sharded_ones(data_dir, tmp_path, single):
  """A row-sharded offload cache for some tables, row-wise tables for the rest: one-device model."""
  cfg = _cfg(data_dir, sharding="row_wise", num_devices=8)
  cfg.offload.enabled = True
  cfg.offload.tables = ("C1", "C5")
  cfg.offload.cache_rows = 1200  # a third of the rows: constant eviction
  t = train.Trainer(cfg)
  (cache,) = t.offload.stacks
  assert cache in t.collection.layouts  # the cache itself is split over the devices
  res = train.train_and_evaluate(cfg, str(tmp_path))
  assert abs(res["test_auc"] - single[1]["test_auc"]) < 2e-5
  assert abs(res["test_logloss"] - single[1]["test_logloss"]) < 2e-5
  slots = res["final_state"]["emb"][cache]["table"]
  assert len(slots.addressable_shards) == 8
  assert slots.addressable_shards[0].data.shape[0] * 8 == slots.shape[0]


def test_per_process_input_trains_like_one_device(data_dir, tmp_path, single):
  """``per_process_input=on`` runs the multi-process input path in one process of 8 devices.

  Ids are deduplicated per device and requests and rows move inside the step, for
  replicated, row-wise, table-wise and column-wise tables at once: the one-device model.
  """
  pins = {"C1": "data_parallel", "C5": "table_wise", "C3": "column_wise"}
  cfg = _cfg(
    data_dir,
    sharding="row_wise",
    num_devices=8,
    per_process_input="on",
    **{"embedding.per_table_strategy": pins},
  )
  res = train.train_and_evaluate(cfg, str(tmp_path))
  with open(tmp_path / "input_rows.0.json") as f:
    reads = json.load(f)
  assert reads["per_process_input"] and reads["rows_per_step"] == [cfg.batch_size]
  cfg1, res1 = single
  assert abs(res["test_auc"] - res1["test_auc"]) < 2e-5
  assert abs(res["test_logloss"] - res1["test_logloss"]) < 2e-5
  got, want = _virtual_emb(res, cfg), _virtual_emb(res1, cfg1)
  assert len(got) == 4  # one stack per placement
  cat = lambda emb, k: np.concatenate([emb[n][k] for n in sorted(emb)])
  for k in next(iter(want.values())):  # the stacks differ; the rows of all tables do not
    np.testing.assert_allclose(
      np.sort(cat(got, k), axis=0), np.sort(cat(want, k), axis=0), rtol=1e-5, atol=1e-6
    )


def test_per_process_input_refusals(data_dir):
  cfg = _cfg(data_dir, sharding="column_wise", num_devices=8, per_process_input="on")
  cfg.embedding.l2, cfg.embedding.l2_mode = 1e-4, "dense"
  with pytest.raises(ValueError, match="per_process_input='on'.*l2_mode='dense'"):
    train.Trainer(cfg)
  cfg.per_process_input = "auto"  # one process: the whole-batch path, as always
  assert not train.Trainer(cfg).local_input
  cfg = _cfg(data_dir, sharding="row_wise", num_devices=8, per_process_input="on")
  cfg.offload.enabled = True
  with pytest.raises(ValueError, match="offloaded tables"):
    train.Trainer(cfg)
  cfg.per_process_input = "sometimes"
  with pytest.raises(ValueError, match="config.per_process_input"):
    train.Trainer(cfg)
