r"""Host-offload embedding cache: hit rates, throughput against on-device tables, oversubscription.

  python benchmarks/offload.py [--rows=10000000 --batch=4096 --steps=30]

Three measurements on long-tailed (Zipf) synthetic ids, each table of the
large fields having ``--rows`` rows:

1. Hit rate (unique rows of a batch found in the cache) of the LRU planner
   in steady state (the 1000 batches after every cache is full), for two Zipf
   exponents and cache fractions 1-20% (a planner simulation over generated id
   streams; no device work).
2. Throughput of training with a 10% cache relative to the same model with
   every table on the device, on the same data in the same process (rounds
   alternate between the two to share the machine's noise), and the share of
   the offloaded run's step time the host stages leave exposed (the main
   thread waiting for a planned batch, plus dispatching the swap). The cache
   is filled first (swaps without train steps) until it evicts, so timed steps
   evict and write back.
3. An end-to-end `train_and_evaluate` run whose tables total at least ten
   times ``--device_budget_mb``, with every cache and on-device table inside
   that budget.

On a CPU-only machine the "device" and the host are the same memory: the
cache, the host store and the on-device tables are all arrays in one RAM, and
a "transfer" is a memory copy. So (2) measures the cost of the cache's
bookkeeping (planning, gathering missing rows, swapping, write-back), not of a
PCIe link, and says nothing of GPU/TPU speed. The budget check of (3) is
arithmetic on the bytes the configuration places on the device (the kept
tables plus ``cache_rows`` slots of table and optimizer slots, from their
shapes) against the budget; it does not read the device's memory use, does not
count XLA temporaries, activations or the dense model, and on CPU cannot fail
for lack of device memory.

Last line: ``{"hit_rate": {"<s>": {"0.01": h, ...}}, "throughput_ratio_10pct": r,
"exposed_host_fraction": f, "oversubscribed": {"table_bytes": t, "device_budget_bytes": d,
"completed": true}}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import jax
import numpy as np
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
import common  # noqa: E402

from jaxctr import configs, data, train  # noqa: E402
from jaxctr.embeddings.cache_policy import CachePlanner  # noqa: E402
from jaxctr.embeddings.specs import FeatureSpec  # noqa: E402

FRACTIONS = (0.01, 0.05, 0.1, 0.2)


def hit_rates(rows: int, s: float, batch_ids: int, measure: int, cap: int) -> dict[str, float]:
  """LRU hit rates over the ``measure`` batches after every cache is full (steady state).

  The id stream is drawn batch by batch until the largest cache has filled (its first
  eviction) and ``measure`` more batches ran, or ``cap`` batches.
  """
  rng = np.random.default_rng(7)
  w = np.arange(1, rows + 1, dtype=np.float64) ** (-s)
  cdf = np.cumsum(w)
  cdf /= cdf[-1]
  a = 2654435761 % rows or 1
  while np.gcd(a, rows) != 1:
    a += 1
  planners = {}
  for frac in FRACTIONS:
    slots = int(frac * rows)
    # Rows of the in-flight batches are pinned as in training, if the cache can afford it.
    planners[frac] = CachePlanner(rows, slots, "lru", pin_window=3 if slots >= 8 * batch_ids else 0)
  hits = {f: [] for f in FRACTIONS}
  looked, full_at = [], {}
  i = 0
  while i < cap and (len(full_at) < len(FRACTIONS) or i < max(full_at.values()) + measure):
    rank = np.minimum(np.searchsorted(cdf, rng.random(batch_ids), side="right"), rows - 1)
    u = np.unique((rank * a + 12345) % rows)  # common.zipf_ids, one batch at a time
    looked.append(len(u))
    for f, p in planners.items():
      plan = p.plan(u)
      hits[f].append(int(plan.hit.sum()))
      if f not in full_at and (plan.evict_rows >= 0).any():
        full_at[f] = i
    i += 1
  out = {}
  for f in FRACTIONS:
    out[str(f)] = sum(hits[f][-measure:]) / sum(looked[-measure:])
    print(
      f"zipf {s} cache {f:.0%}: hit rate {out[str(f)]:.3f} (full at batch "
      f"{full_at.get(f, 'never')}, {i} batches)",
      file=sys.stderr,
    )
  return out


def make_dataset(rng, n_train: int, n_eval: int, rows: int, large: int, small: int, s: float):
  vocabs = [rows] * large + [1000] * small
  feats = [FeatureSpec(f"C{i + 1}", "categorical", v) for i, v in enumerate(vocabs)]
  feats += [FeatureSpec(f"I{i + 1}", "numeric") for i in range(4)]

  def split(n):
    cat = np.stack([common.zipf_ids(rng, n, v, s) for v in vocabs], axis=1).astype(np.int32)
    num = rng.standard_normal((n, 4)).astype(np.float32)
    logit = 0.5 * num[:, 0] + 0.3 * np.sin(cat[:, 0].astype(np.float32))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return {"label": label, "cat": cat, "num": num}

  return data.from_arrays(
    "offload_bench",
    {"train": split(n_train), "valid": split(n_eval), "test": split(n_eval)},
    feats,
  )


def base_config(batch: int, offload: bool, min_rows: int):
  c = configs.base_config()
  c.model = "deepfm"
  c.model_config.hidden = (256, 256)
  c.embed_dim = 16
  c.batch_size = batch
  c.eval_batch_size = batch
  c.embedding.optimizer = "rowwise_adagrad"
  c.shuffle = False
  c.progress_bar = False
  c.num_devices = 1
  c.offload.enabled = offload
  c.offload.min_rows = min_rows  # only the large tables are offloaded
  return c


def fill_cache(trainer, state, batches, cap: int):
  """Swaps planned batches in (no train steps) until every cache is full and evicting."""
  full = set()
  for i in range(cap):
    record = next(batches)[3]
    state = state.replace(emb=trainer.tables.before_step(state.emb, record))
    full |= {n for n, p in record["plans"].items() if (p.evict_rows >= 0).any()}
    if len(full) == len(trainer.offload.stacks):
      print(f"cache full after {i + 1} batches", file=sys.stderr)
      return state
  print(f"cache not full after {cap} batches", file=sys.stderr)
  return state


def timed_round(trainer, state, batches, steps: int):
  """``steps`` train steps; returns (state, seconds, seconds the main thread spent on host stages)."""
  host = 0.0
  t0 = time.perf_counter()
  for _ in range(steps):
    t = time.perf_counter()
    item = next(batches)
    state = state.replace(emb=trainer.tables.before_step(state.emb, item.extra))
    host += time.perf_counter() - t
    state, out = trainer._train_step(state, item.batch, item.ids)  # what Trainer.train_step runs
    trainer._train_watch.after_call()
  jax.block_until_ready(out["loss"])
  return state, time.perf_counter() - t0, host


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rows", type=int, default=10_000_000)
  p.add_argument("--large", type=int, default=2, help="fields with a --rows table each")
  p.add_argument("--small", type=int, default=8, help="fields with a 1000-row table each")
  p.add_argument("--batch", type=int, default=4096)
  p.add_argument("--zipf", type=float, default=1.1)
  p.add_argument("--steps", type=int, default=40, help="timed steps per variant")
  p.add_argument("--rounds", type=int, default=4, help="alternating rounds of the timed steps")
  p.add_argument("--warmup", type=int, default=10)
  p.add_argument("--device_budget_mb", type=float, default=64)
  p.add_argument("--sim_measure", type=int, default=1000, help="hit-rate batches once full")
  p.add_argument("--sim_cap", type=int, default=12000, help="cap of a hit-rate stream")
  p.add_argument("--fill_batches", type=int, default=2600, help="cap of the cache-filling phase")
  args = p.parse_args()
  logging.set_verbosity(logging.WARNING)

  # 1. Hit rates of the planner for two skews.
  hit = {}
  for s in (1.05, 1.2):
    # Measured once every cache is full, so caches fill and evict.
    hit[str(s)] = hit_rates(args.rows, s, args.batch * args.large, args.sim_measure, args.sim_cap)

  # 2. Throughput: 10% cache vs every table on the device.
  rng = np.random.default_rng(0)
  n_train = (args.fill_batches + 2 * (args.warmup + args.steps) + 20) * args.batch
  ds = make_dataset(rng, n_train, 4 * args.batch, args.rows, args.large, args.small, args.zipf)
  runs = {}
  for name, off in (("device", False), ("offload", True)):
    c = base_config(args.batch, off, args.rows)
    c.offload.cache_fraction = 0.1
    trainer = train.Trainer(c, dataset=ds)
    state = trainer.init_state()
    batches = trainer.batches("train", train=True)
    if off:  # fill the cache as training would (no steps), so timed steps evict and write back
      state = fill_cache(trainer, state, batches, args.fill_batches)
      trainer.offload.metrics()
    state, _, _ = timed_round(trainer, state, batches, args.warmup)  # compiles every bucket
    runs[name] = [trainer, state, batches, 0.0, 0.0]
  half = args.steps // args.rounds
  for _ in range(args.rounds):
    for r in runs.values():
      r[1], sec, host = timed_round(r[0], r[1], r[2], half)
      r[3] += sec
      r[4] += host
  dev_s, off_s = runs["device"][3], runs["offload"][3]
  ratio = dev_s / off_s
  exposed = runs["offload"][4] / off_s
  stats = runs["offload"][0].offload.metrics()
  print(
    f"step ms: device {dev_s / (args.rounds * half) * 1e3:.1f}, "
    f"offload {off_s / (args.rounds * half) * 1e3:.1f}; "
    f"ratio {ratio:.3f}, exposed host {exposed:.3f}; {stats}",
    file=sys.stderr,
  )
  for r in runs.values():
    r[2].close()
  runs.clear()

  # 3. Oversubscribed end to end: tables >= 10x the device budget.
  budget = int(args.device_budget_mb * 2**20)
  c = base_config(args.batch, True, args.rows)
  c.total_steps = 20
  c.eval_every_steps = 10
  c.log_every_steps = 10
  c.checkpoint.enabled = False
  trainer = train.Trainer(c, dataset=ds)
  coll = trainer.collection
  table_bytes = coll.num_bytes()
  other = table_bytes - trainer.offload.num_bytes()["host_bytes"]  # tables kept on the device
  per_row = {n: o.store.row_bytes for n, o in trainer.offload.stacks.items()}
  slots = int((budget - other) / sum(per_row.values()))
  del trainer
  c.offload.cache_rows = slots
  with tempfile.TemporaryDirectory() as wd:
    t0 = time.perf_counter()
    r = train.train_and_evaluate(c, wd, dataset=ds)
    e2e_s = time.perf_counter() - t0
  device_bytes = other + slots * sum(per_row.values())
  completed = r["step"] == c.total_steps and np.isfinite(r["test_logloss"])
  print(
    f"oversubscribed: tables {table_bytes / 2**20:.0f} MiB, budget {budget / 2**20:.0f} MiB "
    f"(used {device_bytes / 2**20:.1f}), {slots} slots/table, {e2e_s:.0f}s, "
    f"test_auc {r['test_auc']:.4f}",
    file=sys.stderr,
  )
  assert table_bytes >= 10 * budget and device_bytes <= budget
  common.emit(
    {
      "hit_rate": hit,
      "throughput_ratio_10pct": ratio,
      "exposed_host_fraction": exposed,
      "oversubscribed": {
        "table_bytes": int(table_bytes),
        "device_budget_bytes": budget,
        "completed": bool(completed),
      },
    }
  )


if __name__ == "__main__":
  main()
