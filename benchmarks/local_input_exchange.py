r"""Per-process input's all-to-all buffers: sized per batch vs sized for the worst case.

  python benchmarks/local_input_exchange.py [--steps=5]

DeepFM throughput shape: 26 tables of 1M rows (dim 16) stacked and split row-wise over 8
fake CPU devices, global batch 4096 as 2 processes x 4 devices would read it (each
process's half prepared by `EmbeddingCollection.prepare_local`, the two sizes agreed by
their maximum as `agreement.ProcessMax` does), Zipf(1.1) ids, for both row placements.
``worst_case_slots`` is the size before sizing per batch (`sharded.local_capacity`: every
id of a device on one owner); ``batch_sized_slots`` what each step used. Bytes per step:
both all-to-alls of rows (forward rows, backward gradients) over all devices, 2 N^2 K D x 4.
Last stdout line: the JSON result.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

from jaxctr import parallel  # noqa: E402
from jaxctr.embeddings import sharded  # noqa: E402
from jaxctr.embeddings.collection import EmbeddingCollection  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec  # noqa: E402

N, PROCESSES, VOCAB, DIM, BATCH, FIELDS = 8, 2, 1_000_000, 16, 4096, 26


def _collection(placement: str) -> EmbeddingCollection:
  opt = OptimizerSpec("adam_lazy", learning_rate=0.1)
  names = [f"C{i}" for i in range(FIELDS)]
  coll = EmbeddingCollection(
    [FeatureSpec(n, "categorical", VOCAB) for n in names],
    [TableSpec(n, VOCAB, DIM, optimizer=opt) for n in names],
    groups={n: "row_wise" for n in names},
  )
  mesh = parallel.make_mesh(parallel.load_recipe("row_wise"), jax.devices()[:N])
  coll.shard(sharded.MeshPlacement(mesh, ("data",)), row_placement=placement, group_size=4)
  return coll


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=5)
  args = p.parse_args()
  out = {}
  for placement in ("range", "mod"):
    coll = _collection(placement)
    (stack,) = coll.stacks
    rng = np.random.default_rng(0)
    part, per_process = BATCH // PROCESSES, N // PROCESSES
    sizes = []
    for _ in range(args.steps):
      ids = (rng.zipf(1.1, (BATCH, FIELDS)) - 1) % VOCAB
      local = [
        coll.prepare_local({"cat": ids[q * part : (q + 1) * part]}, per_process)[stack.name]
        for q in range(PROCESSES)
      ]
      sizes.append(max(x["req"].shape[-1] for x in local))
    worst = sharded.local_capacity(coll.layouts[stack.name].shard_rows, (BATCH // N) * FIELDS)

    def step_bytes(k: int) -> int:
      return 2 * N * N * k * DIM * 4

    out[placement] = {
      "worst_case_slots": worst,
      "batch_sized_slots": sizes,
      "bytes_per_step_worst_case": step_bytes(worst),
      "bytes_per_step_batch_sized": [step_bytes(k) for k in sizes],
      "reduction": {"min": worst / max(sizes), "max": worst / min(sizes)},
    }
  common.emit(out)


if __name__ == "__main__":
  main()
