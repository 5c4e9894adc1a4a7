r"""Two training processes; one is killed (-9): how fast does the other fail, and resume?

  python benchmarks/multiprocess_kill.py [--heartbeat_timeout_seconds=10]

Runs `python -m jaxctr.main` as 2 processes x 4 CPU devices (row-sharded tables, gloo
collectives), as users launch a multi-host job, with a checkpoint every 20 steps. Once
training runs, process 1 is killed with SIGKILL and the time until process 0 exits is
measured, with its exit status and last error line. Then both are started again on the
same workdir and must finish from the last checkpoint. Last stdout line:
{"survivor_exit_s": t, "survivor_rc": rc, "error": "...", "resumed_from": s, "finished": b}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 400


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _cmd(data_dir, workdir, port, i, heartbeat):
  return [
    sys.executable, "-m", "jaxctr.main",
    f"--config={REPO}/experiments/synthetic/fm.py:smoke",
    f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}",
    "--config.sharding=row_wise", f"--config.total_steps={STEPS}",
    f"--config.eval_every_steps={STEPS}", "--config.log_every_steps=5",
    "--config.checkpoint.every_steps=20", "--config.progress_bar=False",
    "--config.batch_size=256", f"--coordinator_address=localhost:{port}",
    "--num_processes=2", f"--process_id={i}",
    f"--heartbeat_timeout_seconds={heartbeat}",
  ]  # fmt: skip


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _start(data_dir, wd, heartbeat, logs):
  port = _free_port()
  return [
    subprocess.Popen(
      _cmd(data_dir, wd, port, i, heartbeat),
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=open(os.path.join(logs, f"p{i}.{time.time():.0f}.err"), "w"),  # noqa: SIM115
      text=True,
    )
    for i in range(2)
  ]


def _steps_logged(wd) -> int:
  path = os.path.join(wd, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  return sum("train_loss" in line for line in open(path))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--heartbeat_timeout_seconds", type=int, default=10)
  args = ap.parse_args()
  root = tempfile.mkdtemp(prefix="mp_kill_")
  data_dir, wd = os.path.join(root, "tfds"), os.path.join(root, "wd")
  from jaxctr import data as data_lib

  data_lib.load_dataset("synthetic_ctr", data_dir, builder_kwargs={"config": "tiny"})
  procs = _start(data_dir, wd, args.heartbeat_timeout_seconds, root)
  while _steps_logged(wd) < 8 and all(p.poll() is None for p in procs):  # past step 40
    time.sleep(0.05)
  procs[1].kill()
  t0 = time.perf_counter()
  try:
    procs[0].wait(timeout=900)
  except subprocess.TimeoutExpired:
    procs[0].kill()
  survivor_s = time.perf_counter() - t0
  procs[1].wait()
  survivor_rc = procs[0].returncode
  err_files = sorted(f for f in os.listdir(root) if f.startswith("p0."))
  err = open(os.path.join(root, err_files[0])).read().strip().splitlines()
  error = next(
    (ln for ln in reversed(err) if "rror" in ln or "ailed" in ln), err[-1] if err else ""
  )
  print(f"survivor exited after {survivor_s:.1f}s rc={procs[0].returncode}: {error}", flush=True)
  ckpts = sorted(int(n) for n in os.listdir(os.path.join(wd, "checkpoints")) if n.isdigit())
  procs = _start(data_dir, wd, args.heartbeat_timeout_seconds, root)
  outs = [p.communicate(timeout=900) for p in procs]
  finished = all(p.returncode == 0 for p in procs)
  final = json.loads(outs[0][0].strip().splitlines()[-1]) if finished else {}
  new_err = sorted(f for f in os.listdir(root) if f.startswith("p0."))[-1]
  start = re.search(r"steps (\d+)->", open(os.path.join(root, new_err)).read())
  result = {
    "survivor_exit_s": round(survivor_s, 1),
    "survivor_rc": survivor_rc,
    "error": error[-200:],
    "last_checkpoint": ckpts[-1] if ckpts else 0,
    "resumed_from": int(start.group(1)) if start else None,
    "finished": finished and final.get("step") == STEPS,
    "heartbeat_timeout_seconds": args.heartbeat_timeout_seconds,
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
