r"""Load test of the TF-Serving-compatible endpoint on loopback, with a version swap.

  python benchmarks/serving.py [--single=16000 --batch_requests=1500 --swap=3000]

A DeepFM (embedding dim 16, MLP 400-400-400; Criteo's 13 numeric + 26 categorical raw
features) is exported from a dataset prepared from a generated Criteo-format file, and
served by ``python -m jaxctr.serve`` (its default buckets and max batch) in its own process
on 127.0.0.1. 32 concurrent keep-alive clients (one asyncio process, raw HTTP/1.1) then
send, in three phases:

1. ``single``: 1-instance requests (JSON raw values: hex strings, integers, nulls) -> QPS,
   p50 and p99 latency.
2. ``batch256``: 256-instance requests -> served predictions/s and p99. In the same run,
   the same model's offline batched rate: `ServableModel.predict_keys` (encode raw keys +
   forward, batch 4096) in this process while the server idles, timed in rounds that
   alternate with served rounds, so both see the same machine load.
3. ``swap``: 1-instance requests while a new version (a copy of the model, as
   ``jaxctr.export`` would write it: a hidden folder renamed into place) appears in the
   model directory; the server loads, warms and swaps it in. Every request must succeed.

Every phase is bounded in requests and in seconds, and the server is stopped at the end.
Last line: ``{"requests": n, "errors": e, "clients": 32, "single": {"qps", "p50_ms",
"p99_ms"}, "batch256": {"predictions_per_s", "offline_predictions_per_s", "ratio",
"p99_ms", ...}, "swap": {"requests_during": n2, "dropped": d, "new_version": v}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

HOST = "127.0.0.1"  # loopback only


def write_criteo(path: str, n: int, seed: int = 0) -> None:
  """Criteo-format rows: Zipf-popular hex tokens per field, blanks, integer counts."""
  rng = np.random.default_rng(seed)
  keys = [common.zipf_ids(rng, n, 5000) for _ in range(26)]
  with open(path, "w") as fh:
    for i in range(n):
      nums = ["" if rng.random() < 0.1 else str(int(rng.exponential(20))) for _ in range(13)]
      cats = [
        "" if rng.random() < 0.03 else f"{(int(k[i]) * 2654435761 + f) & 0xFFFFFFFF:08x}"
        for f, k in enumerate(keys)
      ]
      fh.write("\t".join([str(int(rng.random() < 0.25)), *nums, *cats]) + "\n")


def build_model(tmp: str, rows: int) -> tuple[str, list[str]]:
  """Exports a DeepFM; returns (model_dir, raw lines of its test split)."""
  from jaxctr import configs, export, train
  from jaxctr.data.builders import CtrConfig, load_dataset

  manual = os.path.join(tmp, "manual")
  os.makedirs(manual)
  write_criteo(os.path.join(manual, "train.txt"), rows)
  cfg = CtrConfig(name="bench", min_count=2, files=("train.txt",), chunk_rows=4096)
  ds = load_dataset(
    "criteo", os.path.join(tmp, "data"), manual_dir=manual, builder_kwargs={"config": cfg}
  )
  c = configs.base_config()
  c.dataset.name = "criteo"
  c.model = "deepfm"
  c.model_config.hidden = (400, 400, 400)
  c.embed_dim = 16
  c.num_devices = 1
  c.progress_bar = False
  trainer = train.Trainer(c, dataset=ds)
  model_dir = os.path.join(tmp, "models")
  export.export(trainer, trainer.init_state(), model_dir)
  with open(os.path.join(manual, "train.txt")) as fh:
    lines = fh.read().splitlines()
  return model_dir, lines[-4096:]


def instances(model_dir: str, lines: list[str]) -> tuple[list[dict], np.ndarray, np.ndarray]:
  """Raw JSON instances of ``lines``, and their parsed keys and numbers (for offline)."""
  from jaxctr.data import parsers

  blob = ("\n".join(lines) + "\n").encode()
  chunks = list(parsers.parse_criteo("<bench>", blocks=[blob], strict=True))
  keys = np.concatenate([c.cat for c in chunks])
  num = np.concatenate([c.num for c in chunks])
  cat_names = [f"C{i + 1}" for i in range(26)]
  num_names = [f"I{i + 1}" for i in range(13)]
  rows = []
  for k, x in zip(keys, num, strict=True):
    r = {n: (f"{v:08x}" if v >= 0 else None) for n, v in zip(cat_names, k, strict=True)}
    r.update({n: (None if np.isnan(v) else int(v)) for n, v in zip(num_names, x, strict=True)})
    rows.append(r)
  return rows, keys, num


class Client:
  """One keep-alive HTTP/1.1 connection (minimal, so the clients cost the server little CPU)."""

  def __init__(self, port: int):
    self.port = port
    self.reader = self.writer = None

  async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    if self.writer is None:
      self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
    head = (
      f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
      f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    self.writer.write(head + body)
    await self.writer.drain()
    status_line = await self.reader.readline()
    length = 0
    while True:
      line = await self.reader.readline()
      if line in (b"\r\n", b""):
        break
      name, _, value = line.decode().partition(":")
      if name.lower() == "content-length":
        length = int(value)
    payload = await self.reader.readexactly(length)
    return int(status_line.split()[1]), payload

  def close(self):
    if self.writer is not None:
      self.writer.close()


async def load(port, bodies, total, clients, deadline_s, expect):
  """``total`` requests from ``clients`` connections; returns (latencies, errors)."""
  conns = [Client(port) for _ in range(clients)]
  lat, errors, sent = [], [], 0
  t_end = time.perf_counter() + deadline_s

  async def worker(c: Client, i: int):
    nonlocal sent
    while sent < total and time.perf_counter() < t_end:
      body = bodies[(sent + i) % len(bodies)]
      sent += 1
      t = time.perf_counter()
      try:
        status, payload = await c.request("POST", "/v1/models/ctr:predict", body)
        ok = status == 200 and len(json.loads(payload)["predictions"]) == expect
      except (OSError, ValueError, KeyError, asyncio.IncompleteReadError) as e:
        ok, payload = False, str(e).encode()
        c.close()
        c.writer = None
      lat.append(time.perf_counter() - t)
      if not ok:
        errors.append(payload[:200])

  await asyncio.gather(*(worker(c, i) for i, c in enumerate(conns)))
  for c in conns:
    c.close()
  return lat, errors


async def status(port) -> dict:
  c = Client(port)
  try:
    code, payload = await c.request("GET", "/v1/models/ctr")
    return json.loads(payload) if code == 200 else {}
  except OSError:
    return {}
  finally:
    c.close()


def pct(lat, q) -> float:
  return float(np.percentile(np.asarray(lat) * 1e3, q)) if lat else float("nan")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--rows", type=int, default=30000, help="rows of the generated Criteo file")
  p.add_argument("--clients", type=int, default=32)
  p.add_argument("--single", type=int, default=16000, help="1-instance requests")
  p.add_argument("--batch_requests", type=int, default=1500, help="256-instance requests")
  p.add_argument("--swap", type=int, default=3000, help="1-instance requests around a swap")
  p.add_argument("--rounds", type=int, default=3, help="alternating served/offline rounds")
  p.add_argument("--phase_seconds", type=float, default=150.0, help="time limit per phase")
  args = p.parse_args()

  tmp = tempfile.mkdtemp(prefix="jaxctr_serving_bench_")
  server = None
  try:
    model_dir, lines = build_model(tmp, args.rows)
    rows, keys, num = instances(model_dir, lines)
    with socket.socket() as s:
      s.bind((HOST, 0))
      port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    server = subprocess.Popen(
      [sys.executable, "-m", "jaxctr.serve", f"--model_dir={model_dir}", "--model_name=ctr",
       f"--host={HOST}", f"--port={port}", "--poll_seconds=0.5"],
      env=env,
    )  # fmt: skip
    t0 = time.perf_counter()
    while not asyncio.run(status(port)):
      if server.poll() is not None or time.perf_counter() - t0 > 300:
        raise RuntimeError("the server did not come up")
      time.sleep(0.5)
    print(f"server up in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    single = [json.dumps({"instances": [r]}).encode() for r in rows[:1024]]
    batch = [
      json.dumps({"instances": rows[i : i + 256]}).encode() for i in range(0, len(rows), 256)
    ]
    asyncio.run(load(port, single, 200, args.clients, 60, 1))  # warm connections and caches
    total, errs = 0, []

    # 1. single-instance requests.
    t = time.perf_counter()
    lat1, e = asyncio.run(load(port, single, args.single, args.clients, args.phase_seconds, 1))
    dt1 = time.perf_counter() - t
    total, errs = total + len(lat1), errs + e

    # 2. 256-instance requests, alternating with the offline batched rate in this process.
    from jaxctr.predict import resolve
    from jaxctr.serving.model import ServableModel

    offline = ServableModel(resolve(model_dir), buckets=(4096,))
    served_rates, offline_rates, lat256 = [], [], []
    per_round = max(args.batch_requests // args.rounds, 1)
    for _ in range(args.rounds):
      t = time.perf_counter()
      lat, e = asyncio.run(
        load(port, batch, per_round, args.clients, args.phase_seconds / args.rounds, 256)
      )
      served_rates.append(256 * len(lat) / (time.perf_counter() - t))
      lat256 += lat
      total, errs = total + len(lat), errs + e
      reps, t = 0, time.perf_counter()
      while reps < 5 or time.perf_counter() - t < 3.0:
        offline.predict_keys(keys, num)
        reps += 1
      offline_rates.append(reps * len(keys) / (time.perf_counter() - t))

    # 3. a new version appears while 1-instance requests run.
    async def swap_phase():
      task = asyncio.create_task(load(port, single, args.swap, args.clients, args.phase_seconds, 1))
      await asyncio.sleep(1.0)
      src = os.path.join(model_dir, "1")
      hidden = os.path.join(model_dir, ".tmp-2")
      await asyncio.to_thread(shutil.copytree, src, hidden)
      os.rename(hidden, os.path.join(model_dir, "2"))
      lat, e = await task
      st = {}
      for _ in range(120):  # the swap must have happened (loading competes with the load)
        st = await status(port)
        vs = st.get("model_version_status", [])
        if vs and vs[0]["version"] == "2" and len(vs) == 1:
          break
        await asyncio.sleep(0.5)
      return lat, e, st

    lat_s, e_s, st = asyncio.run(swap_phase())
    total, errs = total + len(lat_s), errs + e_s
    for e in errs[:5]:
      print("error:", e, file=sys.stderr)
    vs = st.get("model_version_status", [{}])
    served, offl = float(np.median(served_rates)), float(np.median(offline_rates))
    common.emit(
      {
        "requests": total,
        "errors": len(errs),
        "clients": args.clients,
        "single": {
          "qps": round(len(lat1) / dt1, 1),
          "p50_ms": round(pct(lat1, 50), 2),
          "p99_ms": round(pct(lat1, 99), 2),
        },
        "batch256": {
          "predictions_per_s": round(served),
          "offline_predictions_per_s": round(offl),
          "ratio": round(served / offl, 3),
          "served_rounds": [round(x) for x in served_rates],
          "offline_rounds": [round(x) for x in offline_rates],
          "p50_ms": round(pct(lat256, 50), 2),
          "p99_ms": round(pct(lat256, 99), 2),
        },
        "swap": {
          "requests_during": len(lat_s),
          "dropped": len(e_s),
          "new_version": vs[0].get("version"),
          "versions_after": len(st.get("model_version_status", [])),
        },
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
      }
    )
  finally:
    if server is not None:
      server.terminate()
      try:
        server.wait(timeout=30)
      except subprocess.TimeoutExpired:
        server.kill()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
