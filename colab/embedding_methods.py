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
# # Embedding methods and numeric encoders
#
# The same FM on jaxctr's synthetic CTR data with each way of storing the categorical
# embeddings: full tables, the hashing trick, frequency-based double hashing (own rows for
# frequent ids, two shared hashed rows for the rest), quotient-remainder (QR) compositional
# embeddings, DHE (deep hash embedding: no table, k hashes through an MLP), and low-precision
# storage (fp16, int8 with a per-row scale). Then the numeric features through fixed
# discretisations against AutoDis (soft discretisation over learned meta-embeddings).
#
# Full-size figures from `benchmarks/embedding_methods.py` and `benchmarks/numeric_encoders.py`
# are in `experiments/README.md`.

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
# ## Categorical embedding methods
#
# `embedding.method` and `embedding.dtype` apply to every table (per feature through
# `embedding.per_feature`). Bytes count the tables with their optimizer slots and scales, plus
# (for DHE) the decoder's extra dense parameters with their two Adam moments.

# %%
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_methods_")
spec = "experiments/synthetic/fm.py" + (":smoke" if SMOKE else "")
common = {"progress_bar": False, "dataset.data_dir": DATA_DIR, "checkpoint.enabled": False}
methods = {
  "full": {},
  "hashing": {"embedding.method": "hashing", "embedding.bucket_fraction": 0.25},
  "double_hashing": {
    "embedding.method": "double_hashing",
    "embedding.hot_fraction": 0.2,
    "embedding.bucket_fraction": 0.05,
  },
  "qr": {"embedding.method": "qr", "embedding.bucket_fraction": 0.1},
  "dhe": {"embedding.method": "dhe", "embedding.dhe_k": 256, "embedding.dhe_hidden": (64,)},
  "fp16": {"embedding.dtype": "float16"},
  "int8": {"embedding.dtype": "int8"},
}
runs = {}
for name, overrides in methods.items():
  r = train.train_and_evaluate(
    config_files.load(spec, {**common, **overrides}), os.path.join(root, name)
  )
  runs[name] = r
full_dense = runs["full"]["dense_params"]
table = {}
for name, r in runs.items():
  extra_dense = 12 * (r["dense_params"] - full_dense)  # DHE decoder + Adam moments
  table[name] = {"bytes": r["table_bytes"] + extra_dense, "auc": r["test_auc"]}
  print(f"{name:15s} {table[name]['bytes'] / 2**20:8.2f} MiB  test AUC {r['test_auc']:.4f}")

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(7, 4))
for name, t in table.items():
  ax.scatter(t["bytes"] / 2**20, t["auc"])
  ax.annotate(name, (t["bytes"] / 2**20, t["auc"]), textcoords="offset points", xytext=(5, 3))
ax.set(xscale="log", xlabel="embedding bytes (MiB, log scale)", ylabel="test AUC")
ax.set_title("bytes against AUC (FM, synthetic CTR)")
plt.show()

# %% [markdown]
# ## Numeric features: AutoDis against fixed discretisations
#
# The 13 numeric features of the synthetic data through equal-width, equal-frequency and tree
# (label-aware) buckets, each bucket an embedding, against AutoDis. The discretisations fit
# their boundaries on training rows only.

# %%
encoders = ["equal_width", "equal_frequency", "tree", "autodis"]
numeric = {}
for enc in encoders:
  r = train.train_and_evaluate(
    config_files.load(spec, {**common, "numeric.encoder": enc}), os.path.join(root, enc)
  )
  numeric[enc] = r["test_auc"]
  print(f"{enc:16s} test AUC {r['test_auc']:.4f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(encoders, [numeric[e] for e in encoders], color=["gray"] * 3 + ["tab:orange"])
ax.set(ylim=(min(numeric.values()) - 0.01, max(numeric.values()) + 0.005), ylabel="test AUC")
ax.set_title("numeric encoders (FM)")
plt.show()
