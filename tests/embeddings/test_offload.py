"""Host-offload cache: policies, planner invariants, bit-identical training, checkpoints, faults."""

import json
import os

import jax
import numpy as np
import pytest

from jaxctr import checkpoint as ckpt_lib
from jaxctr import parallel, train
from jaxctr.embeddings import host_store, offload
from jaxctr.embeddings.cache_policy import CachePlanner, CacheTooSmallError
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec
from tests.common import override
from tests.conftest import tiny_config


def _plan(p, rows):
  return p.plan(np.asarray(rows, np.int64))


def test_lru_evicts_least_recent_unpinned():
  p = CachePlanner(100, 4, "lru", pin_window=1)
  _plan(p, [0, 1])  # seq 0 -> slots 0, 1
  _plan(p, [2])  # seq 1
  _plan(p, [1, 3])  # seq 2: row 1 hits
  plan = _plan(p, [4])  # seq 3: slots used by seqs 2, 3 are pinned; oldest of the rest: row 0
  np.testing.assert_array_equal(plan.evict_rows, [0])
  assert p.slot_of[0] == -1 and p.row_of[plan.fill_slots[0]] == 4


def test_lfu_evicts_least_frequent():
  seqs = [[0, 1], [0], [0], [1], [2]]
  lru, lfu = CachePlanner(10, 2, "lru"), CachePlanner(10, 2, "lfu")
  for rows in seqs[:-1]:
    _plan(lru, rows)
    _plan(lfu, rows)
  assert _plan(lru, seqs[-1]).evict_rows.tolist() == [0]  # least recent
  assert _plan(lfu, seqs[-1]).evict_rows.tolist() == [1]  # least frequent


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_rows_of_upcoming_batches_are_kept(policy):
  p = CachePlanner(100, 3, policy)
  for rows in ([0], [1], [2]):
    _plan(p, rows)
  assert p.plan(np.asarray([4]), keep=np.asarray([0, 50])).evict_rows.tolist() == [1]
  # A batch that cannot fit otherwise evicts kept rows.
  assert p.plan(np.asarray([5, 6, 7]), keep=np.asarray([0])).evict_rows.tolist() != []


def test_pinned_rows_are_never_evicted():
  p = CachePlanner(100, 4, "lru", pin_window=1)
  _plan(p, [0, 1])
  _plan(p, [2, 3])
  with pytest.raises(CacheTooSmallError, match="only 2 of 4 cache slots are unpinned"):
    _plan(p, [4, 5, 6])


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_planner_invariants_on_random_batches(policy):
  rng = np.random.default_rng(0)
  rows_total, slots, window = 5000, 600, 2
  p = CachePlanner(rows_total, slots, policy, pin_window=window)
  history = []
  for seq in range(60):
    rows = np.unique(rng.zipf(1.3, 150) % rows_total)
    before_last = p.last_used.copy()
    plan = _plan(p, rows)
    assert len(np.unique(plan.slots)) == len(rows)
    np.testing.assert_array_equal(p.row_of[plan.slots], rows)
    cached = p.row_of >= 0
    np.testing.assert_array_equal(p.slot_of[p.row_of[cached]], np.flatnonzero(cached))
    # Victims were neither used by this batch nor by the `window` batches before it.
    assert (before_last[plan.fill_slots] < seq - window).all()
    for old in history[-window:]:
      assert not np.isin(plan.evict_rows, old).any()
    history.append(rows)


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_incremental_victims_match_a_full_scan(policy):
  """The pooled LRU / candidate LFU pick victims with the keys a scan over all slots would."""
  rng = np.random.default_rng(1)
  rows_total, slots, window = 60_000, 4000, 2
  p = CachePlanner(rows_total, slots, policy, pin_window=window)
  evicting = 0
  for seq in range(150):
    rows = np.unique(rng.zipf(1.2, 400) % rows_total)
    count, last = p.count.copy(), p.last_used.copy()
    hit_slots = p.slot_of[rows][p.slot_of[rows] >= 0]
    count[hit_slots] += 1
    last[hit_slots] = seq
    if policy == "lru":
      key = last.astype(np.float64)
    else:  # fewest accesses, then least recent; empty slots (count 0) first
      key = count * 1e9 + np.maximum(last + 1, 0)
    key[last >= seq - window] = np.inf  # pinned, or used by this batch
    plan = _plan(p, rows)
    m = len(plan.fill_slots)
    np.testing.assert_array_equal(np.sort(key[plan.fill_slots]), np.sort(key)[:m])
    evicting += (plan.evict_rows >= 0).any()
  assert evicting > 50  # the cache was full and evicting for most batches


def test_host_store_matches_collection_init(monkeypatch):
  monkeypatch.setattr(host_store, "_CHUNK_ELEMENTS", 999)  # many chunks, ragged last one
  opt = OptimizerSpec("adagrad", learning_rate=0.1)
  feats = [FeatureSpec("a", "categorical", 3001), FeatureSpec("b", "categorical", 77)]
  tabs = [
    TableSpec("a", 3001, 8, init_std=0.1, optimizer=opt),
    TableSpec("b", 77, 8, optimizer=opt),
  ]
  c = EmbeddingCollection(feats, tabs, groups={"a": "offload", "b": "offload"})
  key = jax.random.key(5)
  full = c.init(key)
  mesh = parallel.make_mesh(parallel.load_recipe("data_parallel"), jax.devices()[:1])
  m = offload.OffloadManager(c, mesh, key, cache_fraction=0.1)
  for name, o in m.stacks.items():
    for k, v in o.store.arrays.items():
      np.testing.assert_array_equal(np.asarray(full[name][k]), v, err_msg=k)


# ---------------------------------------------------------------- training
def _config(data_dir, offloaded, **kw):
  c = tiny_config(
    data_dir,
    **{"model_config.hidden": (16,), "embed_dim": 4, "batch_size": 128, "total_steps": 16},
    **{"checkpoint.async_save": False},
  )
  c.embedding.optimizer = "adam"  # slots and a step-dependent update travel with the rows
  c.offload.enabled = offloaded
  c.offload.cache_rows = 4096  # far fewer slots than rows: constant eviction and re-loading
  return override(c, kw)


def _saved(workdir):
  return ckpt_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"), async_save=False
  ).restore_leaves()


@pytest.fixture(scope="module")
def on_device(data_dir, tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("on_device"))
  return train.train_and_evaluate(_config(data_dir, False), wd), _saved(wd)


def _assert_same(on_device, result, saved):
  ref, ref_saved = on_device
  for k in ("valid_auc", "valid_logloss", "test_auc", "test_logloss"):
    assert result[k] == ref[k], k
  assert sorted(saved) == sorted(ref_saved)
  for k, v in ref_saved.items():
    np.testing.assert_array_equal(saved[k], v, err_msg=k)


def test_offloaded_training_is_bit_identical_and_reports_stats(data_dir, tmp_path, on_device):
  r = train.train_and_evaluate(_config(data_dir, True), str(tmp_path))
  _assert_same(on_device, r, _saved(str(tmp_path)))
  lines = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
  stats = [x for x in lines if any(k.endswith("/hit_rate") for k in x)]
  assert stats and os.listdir(tmp_path / "tensorboard")
  last = stats[-1]
  rates = [v for k, v in last.items() if k.endswith("/hit_rate")]
  assert all(0.0 <= v <= 1.0 for v in rates) and max(rates) > 0.3
  assert sum(v for k, v in last.items() if k.endswith("/bytes_per_step")) > 0
  assert any(v > 0 for k, v in last.items() if k.endswith("/rows_out_per_step"))  # evictions


def test_offloaded_resume_matches(data_dir, tmp_path, on_device):
  c = _config(data_dir, True, **{"offload.policy": "lfu"})
  part = train.train_and_evaluate(c, str(tmp_path), stop_at_step=5)
  assert part["preempted"]
  r = train.train_and_evaluate(c, str(tmp_path))
  _assert_same(on_device, r, _saved(str(tmp_path)))


def test_failing_host_gather_stops_training(data_dir, tmp_path, monkeypatch):
  calls, trained = [0], [0]
  gather, step = offload.HostStore.gather, train.Trainer.train_step

  def failing_gather(self, rows):
    calls[0] += 1
    if calls[0] == 5:  # one offloaded stack (every table): call 5 plans train batch 5
      raise OSError("host store unreadable")
    return gather(self, rows)

  def counting_step(self, state, dev_batch):
    trained[0] += 1
    return step(self, state, dev_batch)

  monkeypatch.setattr(offload.HostStore, "gather", failing_gather)
  monkeypatch.setattr(train.Trainer, "train_step", counting_step)
  with pytest.raises(OSError, match="host store unreadable"):
    train.train_and_evaluate(_config(data_dir, True), str(tmp_path))
  assert trained[0] == 4  # batches 1-4 were planned; batch 5 never ran


def test_failing_write_back_stops_training(data_dir, tmp_path, monkeypatch):
  def failing_scatter(self, rows, values):
    raise OSError("disk full")

  monkeypatch.setattr(offload.HostStore, "scatter", failing_scatter)
  with pytest.raises(RuntimeError, match="write-back") as e:
    train.train_and_evaluate(_config(data_dir, True, **{"offload.cache_rows": 3600}), str(tmp_path))
  assert isinstance(e.value.__cause__, OSError)


def test_hashed_tables_are_offloaded_and_train_bit_identically(data_dir, tmp_path):
  # A hashed table's physical table is `<table>/hash`; offload.enabled must still place it
  # on the host (it was once silently left on the device).
  kw = {"embedding.method": "hashing", "embedding.num_buckets": 20_000, "total_steps": 8}
  ref = train.train_and_evaluate(_config(data_dir, False, **kw), str(tmp_path / "dev"))
  r = train.train_and_evaluate(_config(data_dir, True, **kw), str(tmp_path / "off"))
  plan = json.load(open(tmp_path / "off" / "plan.json"))
  assert set(plan["placements"].values()) == {"offload"}
  for k in ("valid_auc", "valid_logloss", "test_auc", "test_logloss"):
    assert r[k] == ref[k], k
  saved, ref_saved = _saved(str(tmp_path / "off")), _saved(str(tmp_path / "dev"))
  assert sorted(saved) == sorted(ref_saved)
  for k, v in ref_saved.items():
    np.testing.assert_array_equal(saved[k], v, err_msg=k)
