"""Multi-host: 2 processes x 4 CPU devices train like 1 process x 8.

Each run is `python -m jaxctr.main` in a subprocess, as users launch it; the
processes meet through `jax.distributed.initialize` on localhost. With per-process
input (the default in multi-process runs) each process reads half of every global
batch; the ids and rows it lacks move inside the step.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxctr import data as data_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _cmd(data_dir, workdir, extra=()):
  return [
    sys.executable,
    "-m",
    "jaxctr.main",
    f"--config={ROOT}/experiments/synthetic/deepfm.py:smoke",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={data_dir}",
    f"--config.total_steps={STEPS}",
    f"--config.eval_every_steps={STEPS}",
    "--config.log_every_steps=1",
    "--config.progress_bar=False",
    "--config.batch_size=256",
    *extra,
  ]


def _env(devices):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _losses(workdir):
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      rec = json.loads(line)
      if "train_loss" in rec:
        out[rec["step"]] = rec["train_loss"]
  return [out[s] for s in sorted(out)]


# In memory with row-sharded tables; and streaming from 2 input shards (each of the two
# processes reads only its shard's chunks) with column-sharded tables.
VARIANTS = {
  "in_memory": ("--config.sharding=row_wise",),
  "streaming_shards": (
    "--config.sharding=column_wise",
    "--config.dataset.streaming=True",
    "--config.dataset.shuffle_window=2",
    "--config.dataset.input_shards=2",
  ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_two_processes_match_one(tmp_path, variant):
  extra = VARIANTS[variant]
  data_dir = str(tmp_path / "tfds")
  data_lib.load_dataset(
    "synthetic_ctr", data_dir, builder_kwargs={"config": "tiny"}
  )  # prepare once
  one = str(tmp_path / "one")
  r = subprocess.run(
    _cmd(data_dir, one, extra), env=_env(8), capture_output=True, text=True, timeout=600
  )
  assert r.returncode == 0, r.stderr[-3000:]
  port = _free_port()
  two = str(tmp_path / "two")
  procs = [
    subprocess.Popen(
      _cmd(
        data_dir,
        two,
        (
          *extra,
          f"--coordinator_address=localhost:{port}",
          "--num_processes=2",
          f"--process_id={i}",
        ),
      ),
      env=_env(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  l1, l2 = _losses(one), _losses(two)
  assert len(l1) == len(l2) == STEPS
  np.testing.assert_allclose(l2, l1, rtol=1e-5)
  m1 = json.loads(r.stdout.strip().splitlines()[-1])
  m2 = json.loads(outs[0][0].strip().splitlines()[-1])  # process 0 prints the metrics
  assert abs(m1["test_auc"] - m2["test_auc"]) < 1e-5
  assert abs(m1["test_logloss"] - m2["test_logloss"]) < 1e-5
  # Input work per process: the single process read whole batches, each of the two read
  # exactly half of every global batch (counted per step by the trainer).
  (single,) = _reads(one, 1)
  assert single["rows_per_step"] == [256] and single["steps"] == STEPS
  for i, rec in enumerate(_reads(two, 2)):
    assert rec["process_index"] == i and rec["per_process_input"], rec
    assert rec["rows_per_step"] == [128] and rec["steps"] == STEPS, rec
    assert rec["rows"] == STEPS * 256 // 2


def _reads(workdir, processes):
  out = []
  for i in range(processes):
    with open(os.path.join(workdir, f"input_rows.{i}.json")) as f:
      out.append(json.load(f))
  return out
