"""Sequence features under every sharding strategy and the host-offload cache: one device.

The history columns read the item and category tables (shared with the target fields), so
those are the hot tables: every history position is a lookup in them. SIM with hard search
also needs the raw ids in the batch, which are split over the devices with it. Every
8-device run (forced CPU devices) is compared with one shared one-device run: the test
AUC and logloss within 2e-5 and every on-device table's final rows, gathered back to the
virtual layout, within rtol 1e-5 / atol 1e-6 (8 lazy-Adam steps; only float32 summation
order differs between placements).
"""

import numpy as np
import pytest

from jaxctr import configs, train
from jaxctr.data import behaviour
from tests.common import override

pytestmark = pytest.mark.slow

STRATEGIES = ("data_parallel", "table_wise", "row_wise", "column_wise", "table_row_wise")
# A cache of half the item rows: the history's ids keep evicting and refilling it.
OFFLOAD = {"offload.enabled": True, "offload.tables": ("item_id",), "offload.cache_rows": 1000}


@pytest.fixture(scope="module")
def dataset():
  cfg = behaviour.BehaviourConfig(num_users=50, num_items=2000, num_cates=10, max_len=12)
  return behaviour.in_memory(cfg, sizes=(1024, 256, 256))


def _cfg(**kw):
  c = configs.base_config()
  c.model = "sim"
  c.model_config.update(hidden=(8,), search="hard", top_k=4, short_len=3, heads=1)
  c.embed_dim = 4
  c.batch_size = 16
  c.eval_batch_size = 256
  c.total_steps = 8
  c.eval_every_steps = 8
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 1e-2
  c.checkpoint.enabled = False
  c.progress_bar = False
  c.num_devices = 1
  return override(c, kw)


def _tables(cfg, dataset, result) -> dict[str, np.ndarray]:
  """Final rows of every on-device logical table, whatever the mesh and stacking.

  An offloaded table's rows live in its run's host store (the device holds a cache); it
  is compared through the test metrics, which read every row a test history touches.
  """
  t = train.Trainer(cfg, dataset=dataset)
  virtual = t.collection.unshard_state(result["final_state"]["emb"])
  out = {}
  for s in t.collection.stacks:
    if t.offload is not None and s.name in t.offload.stacks:
      continue
    for c in s.columns:
      f = c.feature
      out[f.table_name] = virtual[s.name]["table"][c.offset : c.offset + f.vocab_size]
  return out


@pytest.fixture(scope="module")
def single(dataset, tmp_path_factory):
  cfg = _cfg()
  res = train.train_and_evaluate(cfg, str(tmp_path_factory.mktemp("one")), dataset=dataset)
  return res, _tables(cfg, dataset, res)


CASES = {s: {"sharding": s} for s in STRATEGIES}
CASES["offload"] = {"sharding": "row_wise", **OFFLOAD}  # the cache itself split row-wise


@pytest.mark.parametrize("case", list(CASES))
def test_sequences_train_like_one_device(dataset, single, tmp_path, case):
  """The 8-device run of each placement trains the one-device model."""
  kw = CASES[case]
  cfg = _cfg(num_devices=8, **kw)
  t = train.Trainer(cfg, dataset=dataset)
  strategies = set(t.plan.strategies.values())
  if "offload.enabled" in kw:
    (cache,) = t.offload.stacks
    assert strategies == {"row_wise", "offload"}  # the hot item table lives on the host
    assert cache in t.collection.layouts  # its device cache is split over the devices
  res = train.train_and_evaluate(cfg, str(tmp_path), dataset=dataset)
  want_res, want = single
  assert abs(res["test_auc"] - want_res["test_auc"]) < 2e-5, case
  assert abs(res["test_logloss"] - want_res["test_logloss"]) < 2e-5, case
  got = _tables(cfg, dataset, res)
  assert set(got) == set(want) - ({"item_id"} if "offload.enabled" in kw else set())
  for name in got:
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
  if "offload.enabled" in kw:
    assert len(res["final_state"]["emb"][cache]["table"].addressable_shards) == 8
    return
  assert strategies == {kw["sharding"]}, strategies
  if kw["sharding"] != "data_parallel":  # tables really are split over the devices
    entry = max(res["final_state"]["emb"].values(), key=lambda e: e["table"].size)
    shards = entry["table"].addressable_shards
    assert len(shards) == 8 and min(s.data.nbytes for s in shards) < entry["table"].nbytes
