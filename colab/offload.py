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
# # Host-offload cache
#
# A table that does not fit in device memory can live in host memory (or memory-mapped on
# disk), with only its hot rows in a device cache. A planner thread maps each upcoming
# batch's rows to cache slots (LRU or LFU), loads the missing rows and writes evicted,
# updated rows back, so the train step runs unchanged on slot ids. How well that works
# depends on how skewed the ids are and how large the cache is.

# %%
# Setup: in Colab this clones jaxctr (the experiment configs live in the checkout) and installs
# it; in a local checkout it does nothing. Point JAXCTR_REPO at your copy of the repository.
import importlib.util
import os
import subprocess
import sys

if not os.path.isdir("experiments"):
  if not os.path.isdir("jaxctr_src"):
    subprocess.check_call(["git", "clone", "-q", os.environ["JAXCTR_REPO"], "jaxctr_src"])
  os.chdir("jaxctr_src")
if importlib.util.find_spec("jaxctr") is None:
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "-e", "."])

import jax

SMOKE = os.environ.get("JAXCTR_NOTEBOOK_SMOKE") == "1"
# Prepared datasets are cached here (by name and version).
DATA_DIR = os.environ.get("JAXCTR_DATA_DIR", "~/.cache/jaxctr/tfds")
print(f"jax {jax.__version__}, backend {jax.default_backend()}: {jax.devices()}")
print("smoke setting (tiny data)" if SMOKE else "full size")

# %% [markdown]
# ## Hit rate against cache size and skew
#
# The cache's own slot planner (`jaxctr.embeddings.cache_policy.CachePlanner`) replayed on
# Zipf-distributed id streams: the share of a batch's distinct rows already in the cache,
# after the cache has filled.

# %%
import numpy as np

from jaxctr.embeddings.cache_policy import CachePlanner

rows = 50_000 if SMOKE else 1_000_000
batches, warmup, batch_ids = (60, 20, 1024) if SMOKE else (400, 200, 8192)
# The cache must hold the distinct rows of the batches in flight (pinned) plus a new one.
fractions = [0.1, 0.2, 0.4] if SMOKE else [0.02, 0.05, 0.1, 0.2, 0.4]
rng = np.random.default_rng(0)


def zipf_batches(s):
  p = 1.0 / np.arange(1, rows + 1) ** s
  p /= p.sum()
  perm = rng.permutation(rows)  # hot ids scattered over the table, as hashed ids are
  return [np.unique(perm[rng.choice(rows, batch_ids, p=p)]) for _ in range(batches)]


hit_rate = {}
for s in (1.05, 1.2):
  stream = zipf_batches(s)
  for policy in ("lru", "lfu"):
    for f in fractions:
      planner = CachePlanner(rows, int(rows * f), policy=policy, pin_window=2)
      hits = lookups = 0
      for i, b in enumerate(stream):
        plan = planner.plan(b)
        if i >= warmup:
          hits, lookups = hits + int(plan.hit.sum()), lookups + len(b)
      hit_rate[s, policy, f] = hits / lookups
  print(f"zipf {s}: " + ", ".join(f"{f:.0%}: {hit_rate[s, 'lru', f]:.3f}" for f in fractions))

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 4))
for s in (1.05, 1.2):
  for policy, style in (("lru", "o-"), ("lfu", "s--")):
    ys = [hit_rate[s, policy, f] for f in fractions]
    ax.plot([100 * f for f in fractions], ys, style, label=f"zipf {s}, {policy}")
ax.set(xlabel="cache size (% of the table's rows)", ylabel="hit rate", title="device cache")
ax.legend()
plt.show()

# %% [markdown]
# ## Training with offloaded tables
#
# `offload.enabled=True` offloads every table (or those in `offload.tables`, or with at least
# `offload.min_rows` rows). Float tables train bit-identically to on-device tables; the run
# logs each table's hit rate and rows moved per step to `metrics.jsonl`.

# %%
import json
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_offload_")
spec = "experiments/synthetic/deepfm.py" + (":smoke" if SMOKE else "")
common = {"progress_bar": False, "dataset.data_dir": DATA_DIR, "checkpoint.enabled": False}
on_device = train.train_and_evaluate(config_files.load(spec, common), os.path.join(root, "dev"))
offloaded = train.train_and_evaluate(
  config_files.load(spec, {**common, "offload.enabled": True, "offload.cache_fraction": 0.5}),
  os.path.join(root, "off"),
)
print(f"on device: test AUC {on_device['test_auc']:.6f}, offloaded: {offloaded['test_auc']:.6f}")
with open(os.path.join(root, "off", "metrics.jsonl")) as f:
  logged = [json.loads(line) for line in f]
rates = [r for r in logged if any(k.endswith("hit_rate") for k in r)]
last = rates[-1]
for k in sorted(last):
  if k.startswith("offload/") and k.endswith("hit_rate"):
    print(f"{k:30s} {last[k]:.3f}")
