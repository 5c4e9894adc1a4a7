"""Multi-process faults: a process killed with SIGKILL stops the others fast; a restart resumes.

Two `python -m jaxctr.main` processes (1 CPU device each, row-sharded tables, gloo
collectives) train as a multi-host job does. Once a checkpoint is complete and training
has gone on past it, process 1 is killed (-9). Process 0 must exit on its own within
seconds with exit code 3 and a line saying a peer stopped (not wait in a collective until
a timeout of many minutes). Both are then started again on the same workdir and resume
from the latest complete checkpoint. Every wait is on a file, a log line or an exit; the
time limits only bound a failure.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from jaxctr import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EVERY = 20  # checkpoint interval (steps)
SURVIVOR_LIMIT_S = 60  # what "fails fast" means here; it takes ~1 s (gloo: connection reset)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(data_dir, workdir, total_steps, logs, tag):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  procs, errs = [], []
  for i in range(2):
    err = os.path.join(logs, f"{tag}.p{i}.err")
    errs.append(err)
    with open(err, "w") as fh:  # the child keeps its own descriptor
      procs.append(
        subprocess.Popen(
          [
            sys.executable,
            "-m",
            "jaxctr.main",
            f"--config={ROOT}/experiments/synthetic/fm.py:smoke",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--config.sharding=row_wise",
            "--config.batch_size=256",
            f"--config.total_steps={total_steps}",
            f"--config.eval_every_steps={total_steps}",
            "--config.log_every_steps=1",
            f"--config.checkpoint.every_steps={EVERY}",
            "--config.progress_bar=False",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
          ],  # fmt: skip
          env=env,
          stdout=subprocess.PIPE,
          stderr=fh,
          text=True,
        )
      )
  return procs, errs


def _complete_checkpoints(workdir) -> list[int]:
  """Steps whose checkpoint orbax has finalised (renamed from its temporary folder)."""
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _last_logged_step(workdir) -> int:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  steps = [0]
  with open(path) as f:
    for line in f:
      if line.endswith("\n") and '"train_loss"' in line:  # a whole line, not one being written
        steps.append(json.loads(line)["step"])
  return max(steps)


def _between_saves(workdir) -> bool:
  """A checkpoint is complete and training runs well clear of the next save.

  Training logs every step, and logging reads the step's loss, so the processes are at most
  a step past the logged one: the kill lands in a collective of a training step. A process
  killed while the others wait for an earlier save's cross-process barrier (saves in
  multi-process runs wait for the previous one) stops them only at the heartbeat timeout.
  """
  done = _complete_checkpoints(workdir)
  return bool(done) and done[-1] + 2 <= _last_logged_step(workdir) <= done[-1] + EVERY - 4


def _kill_all(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.wait()


def test_killed_process_stops_the_other_fast_and_restart_resumes(tmp_path):
  data_dir, workdir = str(tmp_path / "tfds"), str(tmp_path / "wd")
  data_lib.load_dataset("synthetic_ctr", data_dir, builder_kwargs={"config": "tiny"})
  procs, errs = _start(data_dir, workdir, 100_000, str(tmp_path), "first")  # never finishes
  try:
    deadline = time.monotonic() + 300  # bounds a failure only (startup is ~20 s)
    while not _between_saves(workdir):
      assert all(p.poll() is None for p in procs), open(errs[0]).read()[-3000:]
      assert time.monotonic() < deadline, "no checkpoint within 300 s"
      time.sleep(0.05)
    os.kill(procs[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    try:
      procs[0].wait(timeout=SURVIVOR_LIMIT_S)
    except subprocess.TimeoutExpired:
      raise AssertionError(
        f"process 0 still running {SURVIVOR_LIMIT_S} s after process 1 was killed"
      ) from None
    survivor_s = time.monotonic() - t0
    procs[1].wait()
  finally:
    _kill_all(procs)
  err0 = open(errs[0]).read()
  assert procs[0].returncode == 3, (procs[0].returncode, err0[-3000:])
  assert "a collective failed" in err0 and "another process of this job" in err0, err0[-3000:]
  assert os.path.join(workdir, "checkpoints") in err0  # says where the restart resumes from
  assert "Traceback" not in err0, err0[-3000:]  # one clear line, no stack
  assert survivor_s < SURVIVOR_LIMIT_S

  # Restart both on the same workdir, now for a few steps past the last complete checkpoint.
  last = _complete_checkpoints(workdir)[-1]
  assert last >= EVERY
  total = last + 2
  procs, errs = _start(data_dir, workdir, total, str(tmp_path), "restart")
  try:
    outs = [p.communicate(timeout=300)[0] for p in procs]
  finally:
    _kill_all(procs)
  for p, err in zip(procs, errs):
    log = open(err).read()
    assert p.returncode == 0, log[-3000:]
    start = re.search(r"steps (\d+)->(\d+)", log)
    assert start and (int(start.group(1)), int(start.group(2))) == (last, total), log[-3000:]
  final = json.loads(outs[0].strip().splitlines()[-1])  # process 0 prints the metrics
  assert final["step"] == total and 0 <= final["test_auc"] <= 1
