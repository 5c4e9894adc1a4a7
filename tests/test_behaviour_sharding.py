"""Sequence features under sharded tables and the host-offload cache: the one-device model.

The history columns read the item and category tables (shared with the target fields), so
those are the hot tables; SIM with hard search also needs the raw ids in the batch, which
are split over the devices with it.
"""

import pytest

from jaxctr import configs, train
from jaxctr.data import behaviour
from tests.common import override

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def single(dataset, tmp_path_factory):
  return train.train_and_evaluate(_cfg(), str(tmp_path_factory.mktemp("one")), dataset=dataset)


@pytest.mark.parametrize(
  "kw",
  [
    # A cache of half the item rows: the history's ids keep evicting and refilling it.
    {
      "sharding": "row_wise",
      "offload.enabled": True,
      "offload.tables": ("item_id",),
      "offload.cache_rows": 1000,
    },
  ],
  ids=["offload_item_table_beside_row_wise"],
)
def test_sequences_train_like_one_device(dataset, single, tmp_path, kw):
  """Predictions of the 8-device run (row-wise tables, offloaded item table) = one device."""
  cfg = _cfg(num_devices=8, **kw)
  t = train.Trainer(cfg, dataset=dataset)
  (cache,) = t.offload.stacks
  assert cache in t.collection.layouts  # the item cache is split row-wise over the devices
  assert set(t.plan.strategies.values()) == {"row_wise", "offload"}  # the item table offloaded
  res = train.train_and_evaluate(cfg, str(tmp_path), dataset=dataset)
  assert abs(res["test_auc"] - single["test_auc"]) < 2e-5
  assert abs(res["test_logloss"] - single["test_logloss"]) < 2e-5
  assert len(res["final_state"]["emb"][cache]["table"].addressable_shards) == 8
