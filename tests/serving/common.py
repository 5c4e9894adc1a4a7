"""Shared fixtures of the serving tests: a Criteo-format raw file and tiny trained runs."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxctr import checkpoint as ckpt_lib
from jaxctr import configs, train
from jaxctr.data.builders import CtrConfig, load_dataset, ratio_split
from tests.common import override

SPLIT_RATIOS = (6.0, 2.0, 2.0)


def write_criteo(path: str, n: int = 1500, seed: int = 0) -> list[str]:
  """A Criteo-format file with a learnable signal, blanks, and tokens rare enough to be OOV."""
  rng = np.random.default_rng(seed)
  lines = []
  for _ in range(n):
    cats = []
    score = 0.0
    for f in range(26):
      k = int(min(rng.zipf(1.6), 400))  # long tail: many keys seen once (OOV with min_count=2)
      score += (0.4 if k % 3 == 0 else -0.2) if f < 4 else 0.0
      cats.append("" if rng.random() < 0.05 else f"{(k * 2654435761 + f) & 0xFFFFFFFF:08x}")
    nums = []
    for j in range(13):
      v = int(rng.integers(-2, 60)) if j == 1 else int(rng.exponential(20.0))
      score += 0.02 * v if j == 0 else 0.0
      nums.append("" if rng.random() < 0.1 else str(v))
    label = int(rng.random() < 1 / (1 + np.exp(-(score - 0.5))))
    lines.append("\t".join([str(label), *nums, *cats]))
  with open(path, "w") as fh:
    fh.write("\n".join(lines) + "\n")
  return lines


def prepare(tmp: str):
  """(dataset, raw lines of the test split in order)."""
  manual = os.path.join(tmp, "manual")
  os.makedirs(manual, exist_ok=True)
  lines = write_criteo(os.path.join(manual, "train.txt"))
  cfg = CtrConfig(
    name="serving", min_count=2, files=("train.txt",), split_ratios=SPLIT_RATIOS, chunk_rows=256
  )
  ds = load_dataset(
    "criteo", os.path.join(tmp, "data"), manual_dir=manual, builder_kwargs={"config": cfg}
  )
  which = ratio_split(np.arange(1, len(lines) + 1), SPLIT_RATIOS, cfg.split_seed)
  test = [ln for ln, w in zip(lines, which, strict=True) if w == 2]
  return ds, test


def config(model: str, **kw):
  c = configs.base_config()
  c.dataset.name = "criteo"
  c.model = model
  c.model_config.hidden = (16,)
  c.embed_dim = 4
  c.batch_size = 128
  c.eval_batch_size = 256
  c.total_steps = 6
  c.log_every_steps = 3
  c.progress_bar = False
  c.checkpoint.async_save = False
  c.num_devices = 1
  c.embedding.init_std = 0.05
  c.embedding.learning_rate = 0.02
  c.optimizer.learning_rate = 0.01
  c.host_memory = "system"
  return override(c, kw)


def offline(trainer, state):
  """The trainer's own predictions on the prepared test split (as `Trainer.evaluate`)."""
  trainer.tables.before_eval(state.emb)
  probs, labels = [], []
  for b in trainer.batches("test", train=False):
    p = np.asarray(trainer.eval_step(state, b.batch, b.ids))
    keep = b.host["mask"] > 0 if "mask" in b.host else slice(None)
    probs.append(p[keep])
    labels.append(b.host["label"][keep])
  return np.concatenate(probs), np.concatenate(labels)


def checkpointed_run(cfg, ds, workdir):
  """A run's (randomly initialised) state, saved as the trainer saves it.

  Training steps would only add compile time: tables, MLPs and DHE start random already.
  """
  trainer = train.Trainer(cfg, dataset=ds)
  state = trainer.init_state()
  for i, entry in enumerate(state["emb"].values()):  # zero-initialised tables (the wide part's
    t = entry["table"]  # cross weights) get random rows, so they count in the comparison
    if t.dtype != np.int16 and not np.asarray(t).any():
      noise = 0.3 * jax.random.normal(jax.random.key(i), t.shape, jnp.float32)
      entry["table"] = jax.device_put(noise.astype(t.dtype), t.sharding)
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
  meta = {"layouts": trainer.tables.layouts_meta(), "step": 0}
  ckpt.save(0, state.replace(emb=trainer.tables.save_tree(state.emb)), meta)
  ckpt.wait()
  with open(os.path.join(workdir, "config.json"), "w") as fh:
    fh.write(cfg.to_json_best_effort())
  return trainer, state
