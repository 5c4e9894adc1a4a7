r"""Records benchmark results with their provenance and renders them into experiments/README.md.

  python benchmarks/results.py record model_zoo [-- --rows=200000]   # runs it, saves the JSON
  python benchmarks/results.py render                                # tables + PNG plots
  python benchmarks/results.py render --check                        # fails if README is stale

``record`` runs ``benchmarks/<name>.py`` with the given arguments, takes the JSON object on
the last line of its stdout and writes ``experiments/results/<name>.json``: the result plus
the command, the commit (and whether the tree was dirty), the date and the machine (CPU
model, cores, memory, JAX version and backend).

``render`` rewrites each ``<!-- results:<name> -->`` ... ``<!-- /results:<name> -->`` block
of ``experiments/README.md`` from the recorded JSON (a markdown table and a provenance line)
and saves a plot as ``experiments/plots/<name>.png``, linked from the block. Text outside the
blocks is left alone, so the prose around a table is written by hand and the numbers never
are.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")
PLOTS = os.path.join(ROOT, "experiments", "plots")
README = os.path.join(ROOT, "experiments", "README.md")


# ----------------------------------------------------------------------------- record
def machine() -> dict:
  """What the numbers were measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  out = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
  try:
    out["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
  except (ValueError, OSError, AttributeError):
    pass
  try:
    import jax

    out.update(jax=jax.__version__, backend=jax.default_backend())
  except ImportError:
    pass
  return out


def _git(*args: str) -> str:
  return subprocess.run(
    ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
  ).stdout.strip()


def record(name: str, args: list[str]) -> dict:
  """Runs benchmark ``name`` and saves its last-line JSON with provenance."""
  script = os.path.join(ROOT, "benchmarks", f"{name}.py")
  if not os.path.isfile(script):
    raise SystemExit(f"results: no benchmark {script}")
  cmd = [sys.executable, script, *args]
  load_before = os.getloadavg()[0]
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
  lines = [line for line in proc.stdout.splitlines() if line.strip()]
  if proc.returncode or not lines:
    raise SystemExit(f"results: {' '.join(cmd)} exited {proc.returncode} with no JSON")
  entry = {
    "benchmark": name,
    "command": " ".join(["python", f"benchmarks/{name}.py", *args]),
    "commit": _git("rev-parse", "--short", "HEAD"),
    "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": machine(),
    # Other jobs on the machine slow timings (not AUCs): the 1-minute load average around the run.
    "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    "result": json.loads(lines[-1]),
  }
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
    json.dump(entry, f, indent=1)
    f.write("\n")
  return entry


# ----------------------------------------------------------------------------- render
def _fmt(x, spec: str) -> str:
  return "" if x is None else format(x, spec)


def _rows_table(result: dict, columns: list[tuple[str, str, str]], sort_key: str) -> str:
  """A markdown table of ``{row: {column: value}}`` sorted by ``sort_key`` (descending)."""
  ok = {k: v for k, v in result.items() if isinstance(v, dict) and "error" not in v}
  failed = {k: v for k, v in result.items() if isinstance(v, dict) and "error" in v}
  head = "| | " + " | ".join(title for _, title, _ in columns) + " |"
  lines = [head, "|---|" + "---:|" * len(columns)]
  for name, r in sorted(ok.items(), key=lambda kv: -(kv[1].get(sort_key) or 0)):
    cells = " | ".join(_fmt(r.get(key), spec) for key, _, spec in columns)
    lines.append(f"| {name} | {cells} |")
  for name, r in sorted(failed.items()):
    lines.append(f"| {name} | failed: {str(r['error']).splitlines()[0][:80]} |")
  return "\n".join(lines)


def _bar_plot(path: str | None, result: dict, key: str, title: str, ref: float | None = None):
  if path is None:
    return
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  items = sorted(
    ((k, v[key]) for k, v in result.items() if isinstance(v, dict) and key in v),
    key=lambda kv: kv[1],
  )
  fig, ax = plt.subplots(figsize=(7, 0.3 * len(items) + 1.5))
  ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
  if ref is not None:
    ax.axvline(ref, color="gray", linestyle="--", label=f"oracle {ref:.4f}")
    ax.legend(loc="lower right")
  lo = min(v for _, v in items)
  hi = max([v for _, v in items] + ([ref] if ref else []))
  ax.set(xlim=(lo - 0.1 * (hi - lo + 1e-3), hi + 0.05 * (hi - lo + 1e-3)), xlabel=key, title=title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _scatter_plot(path: str | None, result: dict, x: str, y: str, title: str):
  if path is None:
    return
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, r in result.items():
    if isinstance(r, dict) and x in r and y in r:
      ax.scatter(r[x], r[y])
      ax.annotate(name, (r[x], r[y]), textcoords="offset points", xytext=(4, 3), fontsize=8)
  ax.set(xscale="log", xlabel=x + " (log scale)", ylabel=y, title=title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def render_model_zoo(result: dict, plot: str | None) -> str:
  models = {k: v for k, v in result.items() if isinstance(v, dict)}
  oracle = next((v.get("oracle_auc") for v in models.values() if v.get("oracle_auc")), None)
  table = _rows_table(
    models,
    [
      ("test_auc", "test AUC", ".4f"),
      ("test_logloss", "test logloss", ".4f"),
      ("params", "dense params", ",d"),
      ("examples_per_s", "examples/s", ",.0f"),
    ],
    "test_auc",
  )
  _bar_plot(plot, models, "test_auc", "model zoo: test AUC", oracle)
  return table + (f"\n\nOracle test AUC: {oracle:.4f}." if oracle else "")


def render_embedding_methods(result: dict, plot: str | None) -> str:
  full = result.get("full", {})
  rows = {}
  for name, r in result.items():
    rows[name] = dict(r)
    if full and "bytes" in r:
      rows[name]["share"] = r["bytes"] / full["bytes"]
      rows[name]["delta"] = r["test_auc"] - full["test_auc"]
  table = _rows_table(
    rows,
    [
      ("bytes", "bytes", ",d"),
      ("share", "vs full", ".2f"),
      ("test_auc", "test AUC", ".5f"),
      ("delta", "AUC - full", "+.4f"),
      ("examples_per_s", "examples/s", ",.0f"),
    ],
    "test_auc",
  )
  _scatter_plot(plot, result, "bytes", "test_auc", "embedding methods: bytes against AUC")
  return table


def render_numeric_encoders(result: dict, plot: str | None) -> str:
  table = _rows_table(
    result, [("test_auc", "test AUC", ".5f"), ("test_logloss", "test logloss", ".5f")], "test_auc"
  )
  _bar_plot(plot, result, "test_auc", "numeric encoders: test AUC")
  return table


def render_generic(result: dict, plot: str | None) -> str:
  """Any ``{row: {metric: number}}`` result: every numeric column, no plot."""
  del plot
  keys: list[str] = []
  for r in result.values():
    if isinstance(r, dict):
      keys += [k for k, v in r.items() if isinstance(v, int | float) and k not in keys]
  return _rows_table(result, [(k, k, ".4g") for k in keys], keys[0] if keys else "")


RENDERERS = {
  "model_zoo": render_model_zoo,
  "embedding_methods": render_embedding_methods,
  "numeric_encoders": render_numeric_encoders,
}


def block(entry: dict, plots_dir: str | None = PLOTS) -> str:
  """The markdown between one benchmark's markers; draws its plot unless ``plots_dir`` is None."""
  name = entry["benchmark"]
  plot = None
  if plots_dir is not None:
    os.makedirs(plots_dir, exist_ok=True)
    plot = os.path.join(plots_dir, f"{name}.png")
  body = RENDERERS.get(name, render_generic)(entry["result"], plot)
  m = entry["machine"]
  where = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
  if m.get("backend"):
    where += f", JAX {m.get('jax')} on {m['backend']}"
  if entry.get("load_avg_1m"):
    where += f", load average {entry['load_avg_1m'][0]}-{entry['load_avg_1m'][1]} (start-end)"
  dirty = " (uncommitted changes)" if entry.get("dirty") else ""
  lines = [
    body,
    "",
    f"Generated by `benchmarks/results.py` from `experiments/results/{name}.json`: "
    f"`{entry['command']}` at commit {entry['commit']}{dirty}, {entry['date']}, on {where}.",
  ]
  if name in RENDERERS:  # every named renderer draws a plot
    lines += ["", f"![{name}](plots/{name}.png)"]
  return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- results:(\w+) -->)(.*?)(<!-- /results:\2 -->)", re.S)


def render(
  readme: str = README, results_dir: str = RESULTS, plots_dir: str = PLOTS, draw: bool = True
) -> str:
  """README text with every results block regenerated (each block needs its JSON)."""
  with open(readme) as f:
    text = f.read()

  def sub(m: re.Match) -> str:
    path = os.path.join(results_dir, f"{m.group(2)}.json")
    if not os.path.exists(path):
      raise SystemExit(f"results: {readme} has a block for {m.group(2)} but {path} is missing")
    with open(path) as f:
      entry = json.load(f)
    return f"{m.group(1)}\n{block(entry, plots_dir if draw else None)}\n{m.group(4)}"

  return _BLOCK.sub(sub, text)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  sub = p.add_subparsers(dest="cmd", required=True)
  r = sub.add_parser("record", help="run a benchmark and save its JSON with provenance")
  r.add_argument("name")
  r.add_argument("args", nargs=argparse.REMAINDER)
  g = sub.add_parser("render", help="regenerate the results blocks of experiments/README.md")
  g.add_argument("--check", action="store_true", help="fail if the README is not up to date")
  a = p.parse_args(argv)
  if a.cmd == "record":
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    entry = record(a.name, args)
    print(json.dumps({"saved": f"experiments/results/{a.name}.json", **entry["result"]}))
    return
  new = render(draw=not a.check)
  with open(README) as f:
    old = f.read()
  if a.check:
    if new != old:
      raise SystemExit("experiments/README.md is stale: run `python benchmarks/results.py render`")
    print(json.dumps({"up_to_date": True}))
    return
  with open(README, "w") as f:
    f.write(new)
  print(json.dumps({"rendered": [m.group(2) for m in _BLOCK.finditer(new)]}))


if __name__ == "__main__":
  main()
