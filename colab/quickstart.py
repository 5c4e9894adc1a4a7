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
# # jaxctr quickstart
#
# Trains logistic regression, FM and DeepFM on jaxctr's built-in synthetic CTR dataset (no
# download: it is generated from a planted logistic model, so its **oracle AUC** is known),
# plots the training and validation curves each run wrote to `metrics.jsonl`, and compares the
# test AUCs with the oracle. Runs on CPU, GPU or TPU runtimes: JAX picks the accelerator.
#
# The full-size runs take a few minutes each on a 2-core CPU and much less on a GPU. The test
# suite executes this notebook with `JAXCTR_NOTEBOOK_SMOKE=1` (tiny data, seconds).

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
# ## Train three models
#
# Each config file in `experiments/synthetic/` holds the tuned hyperparameters of one model;
# the `:smoke` argument shrinks data and model to seconds. `train_and_evaluate` trains,
# evaluates on the validation split every epoch (keeping the best checkpoint) and returns the
# final metrics of the test split.

# %%
import json
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_quickstart_")
results = {}
for model in ["lr", "fm", "deepfm"]:
  spec = f"experiments/synthetic/{model}.py" + (":smoke" if SMOKE else "")
  config = config_files.load(spec, {"progress_bar": False, "dataset.data_dir": DATA_DIR})
  result = train.train_and_evaluate(config, os.path.join(root, model))
  result.pop("final_state")
  results[model] = result
  print(f"{model:7s} test AUC {result['test_auc']:.4f}  logloss {result['test_logloss']:.4f}")

oracle = results["lr"]["oracle_auc"]
print(f"oracle  test AUC {oracle:.4f}")

# %% [markdown]
# ## Curves from `metrics.jsonl`
#
# Every run appends one JSON object per log step (training loss, examples/s) and per
# evaluation (validation AUC and logloss) to `<workdir>/metrics.jsonl`; TensorBoard events
# are beside it.

# %%
import matplotlib.pyplot as plt


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4))
for model in results:
  rows = read_metrics(os.path.join(root, model))
  train_rows = [r for r in rows if "train_loss" in r]
  valid_rows = [r for r in rows if "valid_auc" in r and "test_auc" not in r]
  ax_loss.plot([r["step"] for r in train_rows], [r["train_loss"] for r in train_rows], label=model)
  ax_auc.plot(
    [r["step"] for r in valid_rows], [r["valid_auc"] for r in valid_rows], "o-", label=model
  )
ax_auc.axhline(oracle, color="gray", linestyle="--", label="oracle (test)")
ax_loss.set(xlabel="step", ylabel="training logloss", title="training loss")
ax_auc.set(xlabel="step", ylabel="validation AUC", title="validation AUC")
ax_loss.legend()
ax_auc.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Test AUC against the oracle

# %%
names = list(results)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(names, [results[m]["test_auc"] for m in names], color="tab:blue")
ax.axhline(oracle, color="gray", linestyle="--", label=f"oracle {oracle:.4f}")
low = min(results[m]["test_auc"] for m in names)
ax.set(ylim=(low - 0.02, max(oracle, low) + 0.01), ylabel="test AUC")
ax.legend()
plt.show()
for m in names:
  r = results[m]
  print(
    f"{m:7s} AUC {r['test_auc']:.4f} (oracle gap {oracle - r['test_auc']:.4f}), "
    f"{r['dense_params']:,} dense parameters, {r['table_bytes'] / 2**20:.1f} MiB of tables"
  )
