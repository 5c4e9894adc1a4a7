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
# # Sharded embedding tables
#
# Where each embedding table lives is a per-table choice: replicated (`data_parallel`), whole
# tables packed onto devices (`table_wise`), rows split over devices (`row_wise`), columns
# split (`column_wise`), or rows split within groups of devices (`table_row_wise`). The
# planner picks among them (and the host-offload cache) from the bytes each device holds and
# the bytes moved per step. On a CPU runtime this notebook makes 8 virtual devices; on a
# GPU/TPU runtime it uses the real ones.

# %%
import os

# 8 virtual CPU devices, set before JAX starts (ignored on GPU/TPU runtimes).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  )

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
# ## Row-wise tables over every device
#
# The `row_wise` recipe (`sharding/row_wise.py`) splits every table's rows over the mesh.
# Lookups and updates are one `shard_map`: each device gathers the rows it owns that the
# batch needs, one all-to-all sends them to the devices that asked, and the gradients come
# back the same way. The plan is written to the workdir.

# %%
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_sharding_")
spec = "experiments/synthetic/deepfm.py" + (":smoke" if SMOKE else "")
common = {"progress_bar": False, "dataset.data_dir": DATA_DIR, "checkpoint.enabled": False}
print(f"{len(jax.devices())} devices")
rows = train.train_and_evaluate(
  config_files.load(spec, {**common, "sharding": "row_wise"}), os.path.join(root, "row_wise")
)
print(f"test AUC {rows['test_auc']:.4f}")
print(open(os.path.join(root, "row_wise", "plan.txt")).read())

# %% [markdown]
# Each table (a stack of same-shaped tables, stored as one array) is split over the devices:

# %%
stack, entry = next(iter(rows["final_state"].emb.items()))
print(stack, entry["table"].shape, entry["table"].sharding.spec)
jax.debug.visualize_array_sharding(entry["table"])

# %% [markdown]
# ## The planner under a memory budget
#
# With `embedding.strategy=auto` the planner starts from its cheapest placement per table and
# moves tables (sharding them, or offloading them to host memory) until every device fits
# `embedding.device_memory_budget`; it refuses with the numbers when nothing fits.

# %%
budget = rows["table_bytes"] // 4  # a quarter of the (replicated) tables per device
auto = train.train_and_evaluate(
  config_files.load(
    spec,
    {**common, "embedding.strategy": "auto", "embedding.device_memory_budget": budget},
  ),
  os.path.join(root, "auto"),
)
print(f"budget {budget:,} bytes per device; test AUC {auto['test_auc']:.4f}")
print(open(os.path.join(root, "auto", "plan.txt")).read())

# %% [markdown]
# ## Rows or partial sums
#
# With `embedding.exchange=partials` owners send per-sample partial sums instead of rows
# (DES). Which moves fewer bytes depends on the model: one value per sample for LR, `k + 1`
# for FM, the first layer's width for a DNN. The trainer estimates both and `auto` takes the
# smaller (exact bytes from the compiled HLO: `benchmarks/exchange.py`).

# %%
import matplotlib.pyplot as plt

costs = {}
for model in ["lr", "fm", "deepfm"]:
  c = config_files.load(
    f"experiments/synthetic/{model}.py" + (":smoke" if SMOKE else ""),
    {**common, "sharding": "row_wise", "embedding.exchange": "auto"},
  )
  t = train.Trainer(c)
  costs[model] = t.exchange.bytes_per_step
  print(f"{model:7s} chosen: {t.exchange.mode:8s} estimated bytes/step {costs[model]}")

fig, ax = plt.subplots(figsize=(6, 3.5))
names = list(costs)
x = range(len(names))
ax.bar([i - 0.2 for i in x], [costs[m]["rows"] / 2**20 for m in names], 0.4, label="rows")
ax.bar([i + 0.2 for i in x], [costs[m]["partials"] / 2**20 for m in names], 0.4, label="partials")
ax.set_xticks(list(x), names)
ax.set(ylabel="MiB moved per step (estimate)", title=f"{len(jax.devices())} devices")
ax.legend()
plt.show()
