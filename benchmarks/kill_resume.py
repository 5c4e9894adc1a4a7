r"""kill -9 at random moments of training with async checkpoints, then resume: bit-identical?

  python benchmarks/kill_resume.py [--trials=20] [--steps=120] [--seed=0] [--parallel=1]

A tiny run (synthetic `tiny` data, FM, an async checkpoint every 2 steps, so that a good
share of the kills land while a save is being written) is run once uninterrupted for the
reference. Each trial starts the same run in a fresh workdir, waits until training has
started (its first checkpoint folder appears), sleeps a random time up to the reference's
training time and sends SIGKILL; then the same command runs again to completion. A trial
counts as

* `resumed`: the second run exited cleanly and started from the last complete checkpoint
  on disk at the kill (or from scratch if there was none);
* `identical`: its final state (every leaf, bitwise: SHA-256 of the bytes) equals the
  reference's.

`mid_save` counts kills that left an unfinished (temporary) checkpoint folder behind. Each
run is a fresh process (`--child`), as a restarted job would be; `--parallel` runs several
trials at once (each in its own workdir) on a machine with cores to spare. The last stdout line is
{"trials": n, "resumed": r, "identical": i, "mid_save": m, ...}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_DIR = re.compile(r"^\d+$")


def child(workdir: str, data_dir: str, steps: int) -> None:
  """One training run; prints the start step and a hash of the final state."""
  import jax
  import numpy as np

  from jaxctr import checkpoint, configs, train

  c = configs.base_config()
  c.dataset.data_dir = data_dir
  c.dataset.builder_kwargs = {"config": "tiny"}
  c.model = "fm"
  c.embed_dim = 8
  c.batch_size = 128
  c.eval_batch_size = 4096
  c.total_steps = steps
  c.eval_every_steps = steps // 2
  c.log_every_steps = 10
  c.progress_bar = False
  c.num_devices = 1
  c.checkpoint.every_steps = 2
  c.checkpoint.async_save = True
  ckpt_dir = os.path.join(workdir, "checkpoints")
  start = checkpoint.Checkpointer(ckpt_dir).latest_step() if os.path.isdir(ckpt_dir) else None
  r = train.train_and_evaluate(c, workdir)
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(r["final_state"]):
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  print(json.dumps({"start": start or 0, "step": r["step"], "hash": h.hexdigest()}), flush=True)


def _cmd(workdir, data_dir, steps):
  return [sys.executable, __file__, "--child", f"--workdir={workdir}", f"--data_dir={data_dir}",
          f"--steps={steps}"]  # fmt: skip


def _env(root: str):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  # A persistent compilation cache, as a restarted job would have: every run after the
  # first loads the same executables instead of compiling (most of a tiny run's time).
  env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(root, "jax_cache")
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _run(workdir, data_dir, steps) -> dict:
  r = subprocess.run(
    _cmd(workdir, data_dir, steps),
    env=_env(os.path.dirname(data_dir)),
    capture_output=True,
    text=True,
    timeout=900,
  )
  if r.returncode != 0:
    return {"error": r.stderr[-2000:]}
  return json.loads(r.stdout.strip().splitlines()[-1])


def _complete_steps(ckpt_dir: str) -> list[int]:
  if not os.path.isdir(ckpt_dir):
    return []
  return sorted(int(n) for n in os.listdir(ckpt_dir) if STEP_DIR.match(n))


def _unfinished(ckpt_dir: str) -> list[str]:
  if not os.path.isdir(ckpt_dir):
    return []
  return [n for n in os.listdir(ckpt_dir) if not STEP_DIR.match(n)]


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--child", action="store_true")
  ap.add_argument("--workdir", default="")
  ap.add_argument("--data_dir", default="")
  ap.add_argument("--trials", type=int, default=20)
  ap.add_argument("--steps", type=int, default=120)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--parallel", type=int, default=1, help="trials run at the same time")
  args = ap.parse_args()
  if args.child:
    child(args.workdir, args.data_dir, args.steps)
    return
  rng = random.Random(args.seed)
  root = tempfile.mkdtemp(prefix="kill_resume_")
  data_dir = os.path.join(root, "tfds")
  env = _env(root)
  try:
    # Reference run (also prepares the data); the training window is timed from the first
    # checkpoint folder to the exit.
    wd = os.path.join(root, "reference")
    p = subprocess.Popen(_cmd(wd, data_dir, args.steps), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    ckpt_dir = os.path.join(wd, "checkpoints")
    while p.poll() is None and not (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir)):
      time.sleep(0.01)
    t0 = time.perf_counter()
    out, _ = p.communicate()
    window = time.perf_counter() - t0
    ref = json.loads(out.strip().splitlines()[-1])
    print(f"reference: {ref} training window {window:.1f}s", flush=True)

    def trial(t: int) -> tuple[bool, bool, bool, bool]:
      wd = os.path.join(root, f"trial{t}")
      ckpt_dir = os.path.join(wd, "checkpoints")
      p = subprocess.Popen(_cmd(wd, data_dir, args.steps), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
      while p.poll() is None and not (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir)):
        time.sleep(0.005)
      delay = delays[t]
      time.sleep(delay)
      killed = p.poll() is None
      if killed:
        os.kill(p.pid, signal.SIGKILL)
      p.wait()
      steps_on_disk, partial = _complete_steps(ckpt_dir), _unfinished(ckpt_dir)
      expect_start = steps_on_disk[-1] if steps_on_disk else 0
      r = _run(wd, data_dir, args.steps)
      ok_resume = "error" not in r and r["start"] == expect_start and r["step"] == args.steps
      same = ok_resume and r["hash"] == ref["hash"]
      print(
        f"trial {t}: kill after {delay:.2f}s (killed={killed}) complete={steps_on_disk[-3:]} "
        f"partial={partial} -> {r.get('error', '')[-300:] or r} resumed={ok_resume} "
        f"identical={same}",
        flush=True,
      )
      shutil.rmtree(wd, ignore_errors=True)
      return killed, bool(partial), ok_resume, same

    delays = [rng.uniform(0, window) for _ in range(args.trials)]
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
      outcomes = list(pool.map(trial, range(args.trials)))
    kills, mid_save, resumed, identical = (sum(x) for x in zip(*outcomes, strict=True))
  finally:
    shutil.rmtree(root, ignore_errors=True)
  result = {
    "trials": args.trials,
    "resumed": resumed,
    "identical": identical,
    "killed": kills,  # the others had finished before their kill time
    "mid_save": mid_save,
    "steps": args.steps,
    "training_window_s": round(window, 1),
    "parallel": args.parallel,
  }
  print(json.dumps(result))


if __name__ == "__main__":
  main()
