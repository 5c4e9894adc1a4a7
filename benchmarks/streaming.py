r"""Streaming training input: peak memory against split size, and throughput against in-memory.

  python benchmarks/streaming.py [--sizes 1000000,20000000] [--data_dir /tmp/jaxctr_bench]

1. Prepares synthetic_ctr training splits of each size (default 1M and 20M rows; cached
   under --data_dir, 20M rows take ~3 GB there).
2. Peak RSS: a fresh subprocess trains --rss_steps steps of DeepFM (MLP 400-400-400, dim
   16) with `config.dataset.streaming=True` and reports its peak RSS (VmHWM: ru_maxrss would
   inherit the parent's peak from preparing the data); --rss_reps processes per size,
   alternating sizes, median reported (one process's peak varies by a few hundred MB with
   thread timing and heap reuse); memory must not grow with the split.
3. Throughput at the throughput benchmark's shape (benchmarks/train_throughput.py: 26 fields,
   1M-row tables, dim 16, MLP 400-400-400, batch 4096, lazy Adam): one trainer over the
   smallest prepared split (ids of the prepared data; the feature specs are widened to 1M
   rows), training steps fed alternately by the in-memory and the streaming loader
   (--reps rounds of --steps timed steps each, after warm-up). A step is timed from the
   trainer's input iterator to the loss on the host, as in training.
4. Loader alone (no model), one epoch of the smallest split per round, alternating: the
   library's streaming `Loader` (a Grain pipeline, jaxctr/data/streaming.py, reading
   --read_ahead windows ahead) against `handwritten_reference`, a compact copy of the
   hand-written generator it replaced (same work: chunk-order shuffle, window shuffle of
   rows, rebatching; one window read at a time, batches prefetched in a thread).

Last stdout line: {"peak_rss_bytes": {"1000000": b1, "20000000": b2},
"examples_per_s": {"in_memory": x, "streaming": y}, "loader_rows_per_s": {"grain_loader":
{...}, "handwritten_reference": {...}}, ...} (medians over rounds, with spread).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from jaxctr import configs  # noqa: E402
from jaxctr.data import builders, synthetic  # noqa: E402


def builder_config(rows: int) -> builders.CtrConfig:
  return builders.CtrConfig(
    name=f"stream_{rows}", sizes=(rows, 65536, 65536), synthetic=synthetic.SyntheticConfig()
  )


def load(rows: int, data_dir: str):
  return builders.load_dataset(
    "synthetic_ctr", data_dir, builder_kwargs={"config": builder_config(rows)}
  )


def make_config(batch: int):
  c = configs.base_config()
  c.model = "deepfm"
  c.model_config.hidden = (400, 400, 400)
  c.embed_dim = 16
  c.batch_size = batch
  c.embedding.optimizer = "adam_lazy"
  c.progress_bar = False
  c.dataset.streaming = True
  return c


def child_rss(rows: int, data_dir: str, steps: int, batch: int) -> None:
  """Trains `steps` streaming steps; prints peak RSS bytes."""
  from jaxctr import train

  trainer = train.Trainer(make_config(batch), dataset=load(rows, data_dir))
  state = trainer.init_state()
  it = trainer.batches("train", train=True)
  for _ in range(steps):
    state, out = trainer.train_step(state, next(it))
  float(out["loss"])
  it.close()
  print(json.dumps({"peak_rss_bytes": common.peak_rss_bytes()}))


def throughput(rows: int, data_dir: str, steps: int, warmup: int, reps: int, batch: int) -> dict:
  from jaxctr import train

  ds = load(rows, data_dir)
  wide = tuple(
    dataclasses.replace(f, vocab_size=1_000_000) if f.kind == "categorical" else f
    for f in ds.info.features
  )
  ds = dataclasses.replace(ds, info=dataclasses.replace(ds.info, features=wide))
  c = make_config(batch)
  trainer = train.Trainer(c, dataset=ds)
  state = trainer.init_state()
  rates: dict[str, list[float]] = {"in_memory": [], "streaming": []}
  for r in range(reps):
    for mode in ("in_memory", "streaming") if r % 2 == 0 else ("streaming", "in_memory"):
      trainer.config.dataset.streaming = mode == "streaming"
      it = trainer.batches("train", train=True, start_step=r * (steps + warmup))
      for _ in range(warmup):  # includes reading the split (in-memory) and compiling
        state, out = trainer.train_step(state, next(it))
      float(out["loss"])
      times = []
      for _ in range(steps):
        t = time.perf_counter()
        state, out = trainer.train_step(state, next(it))
        float(out["loss"])
        times.append(time.perf_counter() - t)
      it.close()
      rates[mode].append(batch / float(np.median(times)))
  return rates


def handwritten_reference(src, batch: int, seed: int, window: int):
  """The streaming generator the Grain pipeline replaced, kept here as the reference it is
  compared with: one epoch, drop_remainder, one shard (its other paths did the same work)."""
  from jaxctr.data.loader import prefetch

  def batches():
    order = np.random.default_rng([seed, 0, 1]).permutation(src.num_chunks)
    buf, have = [], 0
    for w in range(0, src.num_chunks, window):
      cs = src.chunks(order[w : w + window])
      rows = {k: np.concatenate([c[k] for c in cs]) for k in cs[0]}
      perm = np.random.default_rng([seed, 0, 2, w]).permutation(len(rows["label"]))
      buf.append({k: np.take(v, perm, axis=0) for k, v in rows.items()})
      have += len(perm)
      if have < batch:
        continue
      rows = {k: np.concatenate([x[k] for x in buf]) for k in buf[0]}
      n_full = have // batch
      for i in range(n_full):
        yield {k: v[i * batch : (i + 1) * batch] for k, v in rows.items()}
      have -= n_full * batch
      buf = [{k: v[n_full * batch :] for k, v in rows.items()}] if have else []

  return prefetch(batches(), 2)


def loader_only(rows: int, data_dir: str, reps: int, batch: int, window: int, read_ahead: int):
  """Rows/s of the streaming Loader (Grain) and of the hand-written reference, alternating."""
  from jaxctr.data.loader import Loader

  src = load(rows, data_dir).split("train")
  out: dict[str, list[float]] = {"grain_loader": [], "handwritten_reference": []}
  for r in range(reps):
    for name in list(out) if r % 2 == 0 else list(out)[::-1]:
      t, n = time.perf_counter(), 0
      it = (
        Loader(
          src,
          batch,
          seed=r,
          num_epochs=1,
          in_memory=False,
          window_chunks=window,
          read_ahead=read_ahead,
        )
        if name == "grain_loader"
        else handwritten_reference(src, batch, r, window)
      )
      for b in it:
        n += len(b["label"])
      out[name].append(n / (time.perf_counter() - t))
  return out


def spread(xs: list[float]) -> dict:
  return {"median": float(np.median(xs)), "min": float(min(xs)), "max": float(max(xs))}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", default="1000000,20000000")
  p.add_argument("--data_dir", default="/tmp/jaxctr_bench")
  p.add_argument("--batch", type=int, default=4096)
  p.add_argument("--rss_steps", type=int, default=100)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--reps", type=int, default=4)
  p.add_argument("--window", type=int, default=8)
  p.add_argument("--read_ahead", type=int, default=2, help="streaming Loader's read_ahead")
  p.add_argument("--rss_reps", type=int, default=3, help="fresh processes per size (median)")
  p.add_argument("--prepare_only", action="store_true")
  p.add_argument("--parts", default="rss,throughput,loader")
  p.add_argument("--child_rss", type=int, default=0, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child_rss:
    return child_rss(args.child_rss, args.data_dir, args.rss_steps, args.batch)
  sizes = [int(s) for s in args.sizes.split(",")]
  prepare_s = {}
  for n in sizes:
    t = time.perf_counter()
    load(n, args.data_dir)
    prepare_s[str(n)] = time.perf_counter() - t
  if args.prepare_only:
    return common.emit({"prepare_s": prepare_s})
  parts = args.parts.split(",")
  result: dict = {}
  if "rss" in parts:
    runs: dict[str, list[float]] = {str(n): [] for n in sizes}
    for r in range(args.rss_reps):  # sizes alternate; each run a fresh process
      for n in sizes if r % 2 == 0 else sizes[::-1]:
        cmd = [sys.executable, __file__, f"--child_rss={n}", f"--data_dir={args.data_dir}"]
        cmd += [f"--rss_steps={args.rss_steps}", f"--batch={args.batch}"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs[str(n)].append(json.loads(res.stdout.strip().splitlines()[-1])["peak_rss_bytes"])
    rss = {k: int(np.median(v)) for k, v in runs.items()}
    result["peak_rss_bytes"] = rss
    result["peak_rss_bytes_spread"] = {k: spread(v) for k, v in runs.items()}
    result["rss_ratio_largest_over_smallest"] = rss[str(max(sizes))] / rss[str(min(sizes))]
    result["rss_steps"] = args.rss_steps
  if "throughput" in parts:
    rates = throughput(min(sizes), args.data_dir, args.steps, args.warmup, args.reps, args.batch)
    ratio = [s / m for s, m in zip(rates["streaming"], rates["in_memory"], strict=True)]
    result["examples_per_s"] = {k: float(np.median(v)) for k, v in rates.items()}
    result["examples_per_s_spread"] = {k: spread(v) for k, v in rates.items()}
    result["streaming_over_in_memory"] = spread(ratio)
  if "loader" in parts:
    loaders = loader_only(
      min(sizes), args.data_dir, max(2, args.reps // 2), args.batch, args.window, args.read_ahead
    )
    result["loader_rows_per_s"] = {k: spread(v) for k, v in loaders.items()}
    ratio = [g / h for g, h in zip(*loaders.values(), strict=True)]
    result["grain_over_handwritten"] = spread(ratio)
    result["read_ahead"] = args.read_ahead
  result.update(prepare_s_if_not_cached=prepare_s, batch=args.batch, load_avg_1m=os.getloadavg()[0])
  common.emit(result)


if __name__ == "__main__":
  main()
