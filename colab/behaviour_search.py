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
# # Behaviour models and interaction search
#
# Two kinds of model that look for structure instead of being told it, each on synthetic data
# where the structure is planted and known:
#
# * **Behaviour models** (DIN, SIM) weigh each behaviour in a user's history by its relevance
#   to the target item. On `synthetic_behaviour` the click depends on how many recent
#   behaviours share the target's category (and on a co-action table of item groups); a DNN
#   over the sum-pooled history has to untangle that from one vector.
# * **Interaction search** (AutoFIS) puts a gate on every field pair and prunes the pairs
#   whose gate reaches zero. On `synthetic_ctr/planted` 6 of the 45 pairs interact.
#
# The test suite executes this notebook with `JAXCTR_NOTEBOOK_SMOKE=1` (tiny data, seconds).

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
# ## Sum-pooled history against target attention
#
# `experiments/behaviour/synthetic_{dnn,din,sim}.py`: the same embedding size, output MLP and
# schedule; the DNN reads the sum of the history's embeddings, DIN an attention-weighted sum
# (an MLP scores each behaviour against the target), SIM soft-searches the history for the
# behaviours closest to the target and attends over those (SIM runs at full size only).
# How much attention adds depends on the data: with many rows per category the DNN recovers
# the history's category histogram too (`experiments/README.md`, Behaviour models, has
# the measured margins).

# %%
import tempfile

from jaxctr import config_files, train

root = tempfile.mkdtemp(prefix="jaxctr_behaviour_")
common = {"progress_bar": False, "dataset.data_dir": DATA_DIR}
behaviour = {}
for model in ["dnn", "din"] if SMOKE else ["dnn", "din", "sim"]:  # SIM: full size only
  spec = f"experiments/behaviour/synthetic_{model}.py" + (":smoke" if SMOKE else "")
  result = train.train_and_evaluate(config_files.load(spec, common), os.path.join(root, model))
  result.pop("final_state")
  behaviour[model] = result
  print(f"{model:4s} test AUC {result['test_auc']:.4f}  logloss {result['test_logloss']:.4f}")
oracle = behaviour["dnn"]["oracle_auc"]
print(f"oracle test AUC {oracle:.4f}")

# %%
import matplotlib.pyplot as plt

names = list(behaviour)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(names, [behaviour[m]["test_auc"] for m in names], color="tab:blue")
ax.axhline(oracle, color="gray", linestyle="--", label=f"oracle {oracle:.4f}")
low = min(behaviour[m]["test_auc"] for m in names)
ax.set(ylim=(low - 0.02, max(oracle, low) + 0.01), ylabel="test AUC", title="synthetic_behaviour")
ax.legend()
plt.show()

# %% [markdown]
# ## What DIN attends to
#
# DIN's attention weights for test rows, next to the planted signal: each history
# behaviour's share of the click logit. The category term counts behaviours of the target's
# category, weighted towards the recent ones; the co-action term adds a +-1 per (target
# group, behaviour group). The weights are read from the trained network: its feature encoder
# gives the target and history embeddings, `model.attention.weights` scores them. DIN is
# never told which behaviours matter: the mean weights and the correlation below say how far
# it found them (in the smoke setting, a few dozen steps, it has not). The weights are not
# normalised (`softmax=False`, FuxiCTR's default), so their scale and sign are free: the MLP
# after the weighted sum can flip a sign. What counts is how far the behaviours of the
# target's category stand apart from the others.

# %%
import numpy as np
from flax import nnx

from jaxctr import export
from jaxctr.data.behaviour import BehaviourConfig, BehaviourGenerator
from jaxctr.models import attention

trainer, state, _ = export.load_trained(os.path.join(root, "din"))  # the best checkpoint
trainer.tables.before_eval(state.emb)
b = next(iter(trainer.batches("test", train=False)))
net = nnx.merge(trainer.graphdef, state.params, state.rest, copy=True)
inputs = net.encoder(trainer.tables.eval_features(state.emb, b.ids), b.batch, train=False)
q, k, mask = attention.target_and_history(inputs, net.model.pairs)
weights = np.asarray(net.model.attention.weights(q, k, mask))  # [B, L], zero at padding

# The planted model (jaxctr.data.behaviour) on the same rows, from the generator.
info = trainer.dataset.info
gen = BehaviourGenerator(BehaviourConfig(**info.extra["synthetic"]))
cfg = gen.config
raw = gen.sample(info.num_examples["test"], "test")
n = len(weights)
assert np.array_equal(raw["label"][:n], b.host["label"][:n]), "raw and prepared rows differ"
item, hist = raw["cat"][:n, 1], raw["item_history"][:n]
real = hist >= 0
L = hist.shape[1]
age = np.arange(L)[::-1]  # pre-padded: the newest behaviour is the last column
same_cate = (gen.item_cate[np.maximum(hist, 0)] == gen.item_cate[item][:, None]) & real
recency = np.exp(-age / cfg.recency) * real
cat_term = cfg.s_cat * same_cate * recency / recency.sum(1, keepdims=True)
co = gen.co_table[gen.item_group[item][:, None], gen.item_group[np.maximum(hist, 0)]]
co_term = cfg.s_co * co * real / np.sqrt(real.sum(1, keepdims=True))
planted = cat_term + co_term
# Per-behaviour shares plus the target's own term add up to the generator's logit.
own = cfg.bias + cfg.s_first * gen.first[item]
np.testing.assert_allclose(own + planted.sum(1), raw["logit"][:n], rtol=1e-5, atol=1e-6)

w_same, w_other = weights[same_cate].mean(), weights[real & ~same_cate].mean()
print(f"mean DIN weight: target's category {w_same:.3f}, other categories {w_other:.3f}")
corr = np.corrcoef(weights[real], planted[real])[0, 1]
print(f"correlation of DIN's weights with the planted shares: {corr:.3f} (sign free)")

# %%
i = int(np.argmax(same_cate.sum(1) * (real.sum(1) >= L // 2)))  # a row with some relevant ones
pos = np.flatnonzero(real[i])
fig, (ax_w, ax_p) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
colors = np.where(same_cate[i, pos], "tab:red", "tab:gray")
ax_w.bar(pos, weights[i, pos], color=colors)
ax_w.set(ylabel="DIN weight (sign free)", title=f"test row {i}: red = the target's category")
ax_p.bar(pos, planted[i, pos], color=colors)
ax_p.axhline(0, color="black", linewidth=0.5)
ax_p.set(xlabel="history position (right = most recent)", ylabel="planted logit share")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Interaction search: AutoFIS
#
# `experiments/synthetic/autofis.py` runs both stages with one call (`jaxctr.search.run`,
# or `python -m jaxctr.main --config=experiments/synthetic/autofis.py`): stage one trains
# DeepFM with a gate on every field pair (gRDA drives gates to exactly zero), stage two
# retrains DeepFM on the kept pairs. `selection.json` lists every pair's gate; the planted
# pairs are in the dataset's info.

# %%
import json

from jaxctr import data, search

spec = "experiments/synthetic/autofis.py" + (":smoke" if SMOKE else "")
config = config_files.load(spec, common)
dataset = data.load_dataset(
  config.dataset.name,
  os.path.expanduser(DATA_DIR),
  builder_kwargs=dict(config.dataset.builder_kwargs),
)
found = search.run(config, os.path.join(root, "autofis"), dataset=dataset)
with open(found["selection"]) as fh:
  selection = json.load(fh)
print(f"retrained: test AUC {found['test_auc']:.4f} (oracle {found['oracle_auc']:.4f})")

planted_pairs = dataset.info.extra["planted"]  # the truth travels in the dataset's info
kind = {tuple(p): "low-rank" for p in planted_pairs["lowrank"]}
kind.update({tuple(p): "cross-product" for p in planted_pairs["cross"]})
kept = {tuple(r["pair"]) for r in selection["pairs"] if r["kept"]}
hit = len(kept & set(kind))
print(f"kept {len(kept)} of {len(selection['pairs'])} pairs; {hit} of {len(kind)} planted kept")

# %%
rows = selection["pairs"]
gates = np.abs([r["gate"] for r in rows])
order = np.argsort(-gates)
style = {"low-rank": "tab:red", "cross-product": "tab:orange"}
colors = [style.get(kind.get(tuple(rows[j]["pair"])), "tab:gray") for j in order]
fig, ax = plt.subplots(figsize=(11, 3.8))
ax.bar(range(len(order)), gates[order], color=colors)
ax.set_xticks(range(len(order)), ["x".join(rows[j]["pair"]) for j in order], rotation=90)
ax.set(ylabel="|gate| after the search", title="AutoFIS gates (red/orange: planted pairs)")
for k, c in style.items():
  ax.bar([0], [0], color=c, label=f"planted {k}")
ax.bar([0], [0], color="tab:gray", label="not planted")
ax.legend()
fig.tight_layout()
plt.show()
