# ---
# jupyter:
#   accelerator: GPU
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Export and serve
#
# Trains DeepFM on the built-in synthetic data, exports the checkpoint as a serving
# artifact (the dense forward pass as a serialized `jax.export`, the tables as `.npy` files,
# the vocabularies and numeric statistics), loads it with `jaxctr.serving` (jax and numpy
# only), and checks that predictions from **raw** rows equal the trainer's own predictions.
# Then int8 tables against fp32 (bytes against accuracy), and the TF-Serving-compatible HTTP
# server answering `:predict` requests, with its latency.
#
# The test suite executes this notebook with `JAXCTR_NOTEBOOK_SMOKE=1` (tiny data, seconds).

# %%
# Setup: in Colab this clones jaxctr (the experiment configs live in the checkout) and installs
# it with its serving extra; in a local checkout it does nothing. Point JAXCTR_REPO at your copy
# of the repository.
import importlib.util
import os
import subprocess
import sys

if not os.path.isdir("experiments"):
  if not os.path.isdir("jaxctr_src"):
    subprocess.check_call(["git", "clone", "-q", os.environ["JAXCTR_REPO"], "jaxctr_src"])
  os.chdir("jaxctr_src")
if any(importlib.util.find_spec(m) is None for m in ("jaxctr", "starlette", "uvicorn")):
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", ".[serve]"])

import jax

SMOKE = os.environ.get("JAXCTR_NOTEBOOK_SMOKE") == "1"
# Prepared datasets are cached here (by name and version).
DATA_DIR = os.environ.get("JAXCTR_DATA_DIR", "~/.cache/jaxctr/tfds")
print(f"jax {jax.__version__}, backend {jax.default_backend()}: {jax.devices()}")
print("smoke setting (tiny data)" if SMOKE else "full size")

# %% [markdown]
# ## Train
#
# The default job's config (`experiments/synthetic/deepfm.py`); the run's workdir holds its
# checkpoints (the best one by validation AUC in `best/`) and the `config.json` the exporter
# rebuilds the model from.

# %%
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_serve_")
workdir = os.path.join(root, "deepfm")
spec = "experiments/synthetic/deepfm.py" + (":smoke" if SMOKE else "")
config = config_files.load(spec, {"progress_bar": False, "dataset.data_dir": DATA_DIR})
result = train.train_and_evaluate(config, workdir)
result.pop("final_state")
print(f"test AUC {result['test_auc']:.4f} (oracle {result['oracle_auc']:.4f})")

# %% [markdown]
# ## Export
#
# `python -m jaxctr.export --workdir=WORKDIR --output=OUTPUT [--dtype=int8]` writes
# `OUTPUT/<version>/` (1, 2, ... as TF Serving numbers versions; a server watching `OUTPUT`
# swaps in new versions). Here the same two calls it makes, in this kernel: `load_trained`
# rebuilds the model from the workdir's `config.json` and restores the best checkpoint,
# `export` writes the artifact. `dtype` chooses how the tables are stored: `float32`,
# `float16`, or `int8` with a scale per row. The forward pass is lowered for the platforms
# it will run on (`--platforms`): here the CPU and this runtime's accelerator.

# %%
from jaxctr import export

backend = jax.default_backend()
platforms = ("cpu",) if backend == "cpu" else ("cpu", {"gpu": "cuda"}.get(backend, backend))
trainer, state, step = export.load_trained(workdir)
models = os.path.join(root, "models")
path = {}
for dtype in ("float32", "float16", "int8"):
  out = os.path.join(models, dtype)
  path[dtype] = export.export(trainer, state, out, dtype=dtype, platforms=platforms, step=step)
  print(path[dtype])
print(sorted(os.listdir(path["float32"])))

# %% [markdown]
# ## Served predictions equal the trainer's
#
# The trainer's own predictions on the prepared test split (its evaluation loop, from the
# exported checkpoint), against the served model's predictions on the **raw** test rows: the
# synthetic generator's integer ids and raw counts (the values a request carries), which the
# artifact encodes with the training vocabularies and numeric statistics.

# %%
import numpy as np

from jaxctr.data.synthetic import SyntheticConfig, SyntheticGenerator
from jaxctr.serving.model import ServableModel

trainer.tables.before_eval(state.emb)
offline, labels = [], []
for b in trainer.batches("test", train=False):
  keep = b.host["mask"] > 0 if "mask" in b.host else slice(None)
  offline.append(np.asarray(trainer.eval_step(state, b.batch, b.ids))[keep])
  labels.append(b.host["label"][keep])
offline, labels = np.concatenate(offline), np.concatenate(labels)

info = trainer.dataset.info
synth = SyntheticConfig(**info.extra["synthetic"])
raw = SyntheticGenerator(synth).sample(info.num_examples["test"], "test")
cat_names = [f.name for f in info.features if f.kind == "categorical"]
num_names = [f.name for f in info.features if f.kind == "numeric"]
columns = {n: raw["cat"][:, j].tolist() for j, n in enumerate(cat_names)}
columns.update({n: raw["num"][:, j].astype(int).tolist() for j, n in enumerate(num_names)})
assert np.array_equal(raw["label"], labels), "raw and prepared test rows differ"

model = ServableModel(path["float32"], buckets=(128, 1024))
served = model.predict_columns(columns)
rows = [{n: columns[n][i] for n in columns} for i in range(100)]  # as requests carry them
served_rows = model.predict_instances(rows)
diff = float(np.abs(served - offline).max())
print(f"{len(served):,} test rows: max |served - trainer| = {diff:.2e}")
print(f"first 100 as instances: max diff {np.abs(served_rows - offline[:100]).max():.2e}")
assert diff < 1e-6 and np.abs(served_rows - offline[:100]).max() < 1e-6
print("one raw row:", rows[0])

# %% [markdown]
# ## Table storage: bytes against accuracy
#
# fp16 halves the tables; int8 with one fp32 scale per row keeps (D + 4) of 4D bytes. The
# artifact records the largest rounding error of a stored row value (`max_abs_error`).

# %%
import json

import matplotlib.pyplot as plt

from jaxctr.metrics import auc


def table_bytes(p):
  d = os.path.join(p, "tables")
  return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


storage = {}
for dtype, p in path.items():
  probs = ServableModel(p, buckets=(1024,)).predict_columns(columns)
  with open(os.path.join(p, "schema.json")) as fh:
    bound = max(json.load(fh)["max_abs_error"].values())
  storage[dtype] = {
    "bytes": table_bytes(p),
    "auc": auc(labels, probs),
    "max_diff": float(np.abs(probs - offline).max()),
    "bound": bound,
  }
  r = storage[dtype]
  print(
    f"{dtype:8s} tables {r['bytes'] / 2**10:8.1f} KiB  test AUC {r['auc']:.5f}  "
    f"max |p - p_trainer| {r['max_diff']:.1e}  row rounding <= {bound:.1e}"
  )

fig, (ax_b, ax_a, ax_d) = plt.subplots(1, 3, figsize=(12, 3.5))
names = list(storage)
ax_b.bar(names, [storage[d]["bytes"] / 2**10 for d in names], color="tab:blue")
ax_b.set(ylabel="KiB", title="table bytes")
aucs = [storage[d]["auc"] for d in names]
ax_a.plot(names, aucs, "o-", color="tab:green")
ax_a.set(ylabel="test AUC", title="test AUC")
ax_a.ticklabel_format(axis="y", useOffset=False)
ax_d.bar(names, [max(storage[d]["max_diff"], 1e-9) for d in names], color="tab:orange")
ax_d.set(yscale="log", ylabel="max |p - p_trainer|", title="prediction change")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The HTTP server
#
# `python -m jaxctr.serve --model_dir=...` runs this app under uvicorn. Here it runs in a
# thread of this kernel on a free port: TF Serving's REST API, requests batched dynamically
# into the buckets compiled at load.

# %%
import socket
import threading
import time
import urllib.error
import urllib.request

import uvicorn

from jaxctr.serving.app import make_app
from jaxctr.serving.versions import VersionManager

manager = VersionManager(os.path.join(models, "float32"), buckets=(1, 32), poll_seconds=0)
app = make_app(manager, "deepfm")
with socket.socket() as s:
  s.bind(("127.0.0.1", 0))
  port = s.getsockname()[1]
server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False))
thread = threading.Thread(target=server.run, daemon=True)
thread.start()
deadline = time.monotonic() + 120
while not server.started:
  assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
  time.sleep(0.05)
url = f"http://127.0.0.1:{port}/v1/models/deepfm"


def post(body):
  req = urllib.request.Request(
    url + ":predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
  )
  with urllib.request.urlopen(req) as r:
    return json.loads(r.read())


print(json.loads(urllib.request.urlopen(url).read()))
answer = post({"instances": rows[:3]})
print(answer)
assert np.abs(np.array(answer["predictions"]) - offline[:3]).max() < 1e-6
try:  # a malformed request is answered 400 with what is wrong
  post({"instances": [{**rows[0], "C99": 1}]})
except urllib.error.HTTPError as e:
  print(e.code, json.loads(e.read()))

# %% [markdown]
# ## Latency
#
# Requests sent one after another from this kernel (client, server and model share the
# machine, so this is an upper bound on the model's own time).

# %%
n_requests = 200 if SMOKE else 1000
latency = {}
for size in (1, 32):
  times = []
  for i in range(n_requests):
    lo = (i * size) % (len(rows) - size)
    t0 = time.perf_counter()
    post({"instances": rows[lo : lo + size]})
    times.append(1e3 * (time.perf_counter() - t0))
  latency[size] = np.array(times)
  p50, p99 = np.percentile(times, [50, 99])
  print(f"{size:3d} instances/request: p50 {p50:.2f} ms, p99 {p99:.2f} ms")

fig, ax = plt.subplots(figsize=(6, 3.5))
for size, t in latency.items():
  ax.hist(t, bins=40, alpha=0.6, label=f"{size} instances/request")
ax.set(xlabel="request latency (ms)", ylabel="requests", title=f"{jax.default_backend()} server")
ax.legend()
plt.show()

server.should_exit = True
thread.join(timeout=10)
