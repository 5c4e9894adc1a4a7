"""Loader throughput from prepared (array_record) storage.

Prepares a synthetic dataset of a few million rows (once, cached under --data_dir), then
iterates the train split through `Loader` (batch 4096, shuffled). The last stdout line is
a JSON object with `rows_per_s`.

  python benchmarks/loader.py [--rows 3000000] [--data_dir /tmp/jaxctr_bench] [--streaming]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from absl import logging

from jaxctr.data import builders, synthetic
from jaxctr.data.loader import Loader


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--rows", type=int, default=3_000_000)
  p.add_argument("--batch", type=int, default=4096)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--data_dir", default="/tmp/jaxctr_bench")
  p.add_argument("--streaming", action="store_true", help="window-shuffled streaming mode")
  args = p.parse_args()
  logging.set_verbosity(logging.WARNING)
  cfg = builders.CtrConfig(
    name=f"bench_{args.rows}",
    sizes=(args.rows, 10_000, 10_000),
    synthetic=synthetic.SyntheticConfig(),
  )
  t0 = time.perf_counter()
  ds = builders.load_dataset("synthetic_ctr", args.data_dir, builder_kwargs={"config": cfg})
  prepare_s = time.perf_counter() - t0
  src = ds.split("train")
  t0, c0 = time.perf_counter(), time.process_time()
  loader = Loader(src, args.batch, seed=0, num_epochs=args.epochs, in_memory=not args.streaming)
  rows = 0
  first_s = None
  for b in loader:
    rows += len(b["label"])
    if first_s is None:
      first_s = time.perf_counter() - t0  # includes reading the split into memory
  total_s = time.perf_counter() - t0
  cpu_s = time.process_time() - c0
  # Reading the whole split from storage, on its own.
  t0 = time.perf_counter()
  n = len(src.read_all()["label"])
  read_s = time.perf_counter() - t0
  result = {
    "rows_per_s": rows / total_s,
    "rows": rows,
    "batch": args.batch,
    "epochs": args.epochs,
    "mode": "streaming" if args.streaming else "in_memory",
    "loop_s": total_s,
    "rows_per_cpu_s": rows / cpu_s,
    "load_avg_1m": os.getloadavg()[0],
    "first_batch_s": first_s,
    "storage_read_rows_per_s": n / read_s,
    "prepare_s_if_not_cached": prepare_s,
    "data_dir": os.path.join(args.data_dir),
    "cpu_count": os.cpu_count(),
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
