"""Checkpointing an offloaded table larger than RAM streams it instead of copying it whole.

The host store of a table kept on disk (`offload.disk_dir`) is snapshotted for the async
save in row chunks into an unlinked file beside it, and orbax writes from that mapping
without its own deep copy: the memory a save allocates is a chunk, not the table.
"""

import os
import tracemalloc

import numpy as np

from jaxctr import checkpoint as ckpt_lib
from jaxctr import train
from jaxctr.embeddings import host_store
from tests.conftest import tiny_config

MiB = 1 << 20


def test_saving_a_disk_backed_offloaded_table_streams_it(data_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(host_store, "SNAPSHOT_CHUNK_BYTES", 4 * MiB)
  store_dir = tmp_path / "store"
  c = tiny_config(
    data_dir,
    model="fm",
    **{
      "embedding.method": "hashing",
      "embedding.num_buckets": 1 << 15,  # 26 tables x 32768 rows, with Adam's two slots
      "embedding.optimizer": "adam",
      "offload.enabled": True,
      "offload.cache_rows": 4096,
      "offload.disk_dir": str(store_dir),
    },
  )
  trainer = train.Trainer(c)
  state = trainer.init_state()
  store_bytes = trainer.tables.offload.num_bytes()["host_bytes"]
  assert store_bytes > 64 * MiB
  ckpt = ckpt_lib.Checkpointer(str(tmp_path / "ckpt"), async_save=True)
  files = sorted(os.listdir(store_dir))
  tracemalloc.start()
  try:
    saved = trainer.tables.save_tree(state.emb)
    ckpt.save(0, state.replace(emb=saved), {"layouts": trainer.tables.layouts_meta(), "step": 0})
    del saved
    ckpt.wait()
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < store_bytes / 4, (peak / MiB, store_bytes / MiB)  # before: 2x the table
  assert sorted(os.listdir(store_dir)) == files  # the snapshot file was never visible
  leaves = ckpt.restore_leaves()
  stores = {n: o.store.arrays for n, o in trainer.tables.offload.stacks.items()}
  checked = 0
  for key, value in leaves.items():
    for name, arrays in stores.items():
      for k, v in arrays.items():
        if key == f".emb['{name}']['{k}']":
          np.testing.assert_array_equal(value, v, err_msg=key)
          checked += 1
  assert checked == sum(len(a) for a in stores.values()) >= 3
