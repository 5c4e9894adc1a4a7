r"""Turns the JSON printed by `benchmarks/model_zoo.py` into a markdown table.

  python benchmarks/model_zoo.py | tail -1 | python benchmarks/zoo_table.py
  python benchmarks/zoo_table.py results.json

Reads a file (or stdin); if the input has several lines, the last non-empty one is used (the
benchmark prints its JSON last). Rows are sorted by test AUC, best first; failed models are
listed at the end with their error.
"""

from __future__ import annotations

import argparse
import json
import sys


def load(text: str) -> dict:
  lines = [line for line in text.strip().splitlines() if line.strip()]
  if not lines:
    raise SystemExit("zoo_table: empty input")
  return json.loads(lines[-1])


def _num(x: float | int | None, fmt: str) -> str:
  return "" if x is None else format(x, fmt)


def table(results: dict) -> str:
  ok = {k: v for k, v in results.items() if "error" not in v}
  failed = {k: v for k, v in results.items() if "error" in v}
  oracle = next((v.get("oracle_auc") for v in ok.values() if v.get("oracle_auc")), None)
  lines = [
    "| model | test AUC | test logloss | dense params | examples/s |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, r in sorted(ok.items(), key=lambda kv: -kv[1]["test_auc"]):
    lines.append(
      f"| {name} | {_num(r['test_auc'], '.4f')} | {_num(r['test_logloss'], '.4f')} "
      f"| {_num(r.get('params'), ',d')} | {_num(r.get('examples_per_s'), ',.0f')} |"
    )
  for name, r in sorted(failed.items()):
    lines.append(f"| {name} | failed: {r['error'].splitlines()[0][:80]} | | | |")
  if oracle is not None:
    lines += ["", f"Oracle (Bayes-optimal) test AUC of the dataset: {oracle:.4f}."]
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("path", nargs="?", default="-", help="JSON file (default: stdin)")
  args = p.parse_args(argv)
  text = sys.stdin.read() if args.path == "-" else open(args.path).read()
  print(table(load(text)))


if __name__ == "__main__":
  main()
