r"""Rows vs partials exchange on the real accelerators of this machine: one short timing run.

  python benchmarks/gpu_exchange_check.py [--batch=16384 --steps=20 --rounds=3]

Uses every local device of the default backend (no fake devices) as the table mesh and times
the training step of `benchmarks/exchange.py` in both modes, alternating, for FM, DeepFM and
DNN at the Criteo shape (26 fields, k = 16), plus the HLO collective bytes of each. With one
device no collective runs: the comparison is then the compute each mode adds (partials work
on the global batch per owner). ``--cpu`` runs the same on 8 fake CPU devices (a smoke test of
this script where no accelerator is lent). Last stdout line: the JSON result.
"""

from __future__ import annotations

import os
import sys

if "--cpu" in sys.argv:
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["EXCHANGE_REAL_DEVICES"] = "1"  # exchange.py must not force fake CPU devices

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import exchange  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=16384)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--models", default="fm,deepfm,dnn")
  p.add_argument("--cpu", action="store_true", help="8 fake CPU devices (smoke test)")
  args = p.parse_args()
  n = jax.device_count()
  platform = jax.devices()[0].platform
  print(f"{n} {platform} device(s): {jax.devices()[0].device_kind}", flush=True)
  cases = []
  for model in args.models.split(","):
    t = time.time()
    r = exchange.measure(
      model, "row_wise", 26, 16, n, args.batch, steps=args.steps, rounds=args.rounds
    )
    r["platform"] = platform
    cases.append(r)
    print(
      f"{model:>6}: rows {r['examples_per_s_rows']:,.0f} ex/s {r['examples_per_s_rows_range']}, "
      f"partials {r['examples_per_s_partials']:,.0f} ex/s {r['examples_per_s_partials_range']}; "
      f"exchange bytes {r['exchange_bytes_rows']:,} vs {r['exchange_bytes_partials']:,} "
      f"[{time.time() - t:.0f}s]",
      flush=True,
    )
  common.emit({"devices": n, "platform": platform, "cases": cases})


if __name__ == "__main__":
  main()
