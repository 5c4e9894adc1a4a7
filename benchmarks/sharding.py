r"""Sharding strategies on 8 fake CPU devices: memory per device, traffic, throughput.

  python benchmarks/sharding.py [--vocab=100000 --steps=10 --batch_size=4096]

DeepFM (dim 16, MLP 256-256) on 26 Zipf(1.1) categorical fields whose table
sizes are long-tailed (vocab / 2^(i mod 6)), lazy Adam on the tables. For each
strategy, every table uses it: per-device table + optimizer-slot bytes, bytes
exchanged between devices per step (counted from the step's routing: the two
row all-to-alls of sharded stacks, the gradient all-reduce of replicated ones)
and examples/s. "scaling" is examples/s of row_wise on 1, 2, 4 and 8 devices at
the same global batch. Fake devices share this machine's cores, so absolute
speed and scaling say little about real accelerators; the memory and traffic
columns are exact. Last line: the JSON result.
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from jaxctr import configs, data, train  # noqa: E402
from jaxctr.embeddings import sharded  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec  # noqa: E402

STRATEGIES = {
  "data_parallel": ("data_parallel", {}),
  "table_wise": ("table_wise", {}),
  "row_wise": ("row_wise", {}),
  "column_wise": ("column_wise", {}),
  "table_row_wise": ("table_row_wise", {}),
}


def make_dataset(args):
  rng = np.random.default_rng(0)
  vocabs = [max(args.vocab >> (i % 6), 64) for i in range(args.fields)]
  n = (args.warmup + args.steps) * args.batch_size

  def split(n):
    cat = np.stack([common.zipf_ids(rng, n, v) for v in vocabs], 1).astype(np.int32)
    label = (rng.random(n) < 1 / (1 + np.exp(-(cat[:, 0] % 7 - 3.0) / 3))).astype(np.float32)
    return {"label": label, "cat": cat, "num": rng.standard_normal((n, 13)).astype(np.float32)}

  feats = [FeatureSpec(f"C{i + 1}", "categorical", v) for i, v in enumerate(vocabs)]
  feats += [FeatureSpec(f"I{i + 1}", "numeric") for i in range(13)]
  tr = split(n)
  return data.from_arrays("sharding_bench", {"train": tr, "valid": tr, "test": tr}, feats)


def step_comm_bytes(trainer, ids) -> int:
  """Bytes that cross devices in one step for the host routing ``ids``."""
  coll, n = trainer.collection, trainer.mesh.size
  total = 0
  for s in coll.stacks:
    layout = coll.layouts.get(s.name)
    if layout is not None:
      total += sharded.comm_bytes(layout, ids[s.name])
    elif n > 1:  # ring all-reduce of the replicated stack's row gradients
      total += 2 * (n - 1) * len(ids[s.name]["uniq"]) * s.dim * 4
  return total


def run(ds, args, recipe, devices, **emb):
  c = configs.base_config()
  c.model = "deepfm"
  c.model_config.hidden = (256, 256)
  c.embed_dim = 16
  c.batch_size = args.batch_size
  c.shuffle = False
  c.sharding = recipe
  c.num_devices = devices
  for k, v in emb.items():
    c.embedding[k] = v
  trainer = train.Trainer(c, dataset=ds)
  state = trainer.init_state()
  batches = trainer.batches("train", train=True)
  times, comm = [], []
  for i in range(args.warmup + args.steps):
    dev = next(batches)
    t = time.perf_counter()
    state, out = trainer.train_step(state, dev)
    float(out["loss"])
    if i >= args.warmup:
      times.append(time.perf_counter() - t)
      comm.append(step_comm_bytes(trainer, trainer.collection.prepare(dev[2])))
  batches.close()
  per_dev = trainer.collection.bytes_per_device()
  del state
  jax.clear_caches()
  return {
    "table_bytes_per_device": per_dev,
    "comm_bytes_per_step": int(np.mean(comm)),
    "examples_per_s": args.batch_size / float(np.median(times)),
  }


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--vocab", type=int, default=100_000)
  p.add_argument("--fields", type=int, default=26)
  p.add_argument("--batch_size", type=int, default=4096)
  p.add_argument("--steps", type=int, default=8)
  p.add_argument("--warmup", type=int, default=3)
  args = p.parse_args()
  ds = make_dataset(args)
  result = {"strategies": {}, "scaling": {}}
  for name, (recipe, emb) in STRATEGIES.items():
    result["strategies"][name] = run(ds, args, recipe, 8, **emb)
    print(name, result["strategies"][name], flush=True)
  for n in (1, 2, 4, 8):
    result["scaling"][str(n)] = run(ds, args, "row_wise", n)["examples_per_s"]
    print("scaling", n, result["scaling"][str(n)], flush=True)
  result["devices"] = jax.device_count()
  common.emit(result)


if __name__ == "__main__":
  main()
