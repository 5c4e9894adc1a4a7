r"""DIN vs SIM training-step cost at history lengths 100, 1,000 and 10,000.

  python benchmarks/long_history.py                    # batch 256, 4 GiB budget
  python benchmarks/long_history.py --budget_gb=16 --lengths=100,1000,10000,30000

One training step = gather the target and history rows of the item and category tables
([B, L, D] each), the model's forward and backward pass, SGD on the tables and dense
parameters; jitted, buffers donated. Embedding dim 16, batch ``--batch`` (256), MLP
200-80, DIN's attention MLP 80-40 with Dice over every behaviour; SIM with soft search
(top 50, its auxiliary loss included) and a short history of 10.

* ``step_seconds``: median wall time of ``--steps`` steps after 2 warm-up steps, with the
  min and max beside it (``step_seconds_min``/``_max``); DIN and SIM steps alternate
  within a length so both see the same machine load.
* ``peak_bytes``: XLA's own estimate for the compiled step (arguments + outputs +
  temporaries - donated aliases, `Compiled.memory_analysis`), i.e. what the device must
  hold at once. A configuration whose estimate exceeds ``--budget_gb`` is not run and is
  reported as ``{"fits": false, "peak_bytes": estimate}``.

The LAST stdout line is one JSON object::

  {"din": {"100": {"step_seconds": s, "peak_bytes": b, ...}, "1000": {...},
   "10000": {...}}, "sim": {...}, "batch": 256, "budget_bytes": n}
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxctr import models  # noqa: E402
from jaxctr.models import ModelInputs  # noqa: E402

ITEMS, CATES, DIM = 100_000, 1_000, 16
CONFIGS = {
  "din": {"hidden": (200, 80), "attention_hidden": (80, 40)},
  "sim": {"hidden": (200, 80), "search": "soft", "top_k": 50, "short_len": 10},
}


def make_step(name: str):
  model = models.build(name, CONFIGS[name], num_fields=3, embed_dim=DIM, num_dense=0)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def step(params, tables, batch):
    def loss_fn(params, tables):
      item, cate = tables["item"], tables["cate"]
      hist = batch["item_history"]
      mask = (hist >= 0).astype(jnp.float32)
      seq = lambda t, ids: t[jnp.maximum(ids, 0)] * mask[..., None]
      inputs = ModelInputs(
        fields=jnp.stack(
          [item[batch["user"] % ITEMS], item[batch["item"]], cate[batch["cate"]]], axis=1
        ),
        dense=jnp.zeros((hist.shape[0], 0)),
        sequences={
          "item_history": seq(item, hist),
          "item_history/mask": mask,
          "cate_history": seq(cate, batch["cate_history"]),
          "cate_history/mask": mask,
        },
        field_names=("user_id", "item_id", "cate_id"),
      )
      m = nnx.merge(graphdef, params, rest, copy=True)
      out = m(inputs, train=True, rngs=nnx.Rngs(dropout=jax.random.key(0)))
      logits, aux = models.split_output(out)
      loss = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
      return loss + m.aux_loss(aux, logits, batch["label"])

    loss, (gp, gt) = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, tables)
    sgd = lambda p, g: p - 1e-3 * g
    return jax.tree.map(sgd, params, gp), jax.tree.map(sgd, tables, gt), loss

  return jax.jit(step, donate_argnums=(0, 1)), params


def make_batch(batch: int, length: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  lens = rng.integers(length // 2, length + 1, batch)
  real = np.arange(length)[None] >= length - lens[:, None]
  hist = np.where(real, rng.integers(0, ITEMS, (batch, length)), -1).astype(np.int32)
  return {
    "user": rng.integers(0, ITEMS, batch).astype(np.int32),
    "item": rng.integers(0, ITEMS, batch).astype(np.int32),
    "cate": rng.integers(0, CATES, batch).astype(np.int32),
    "item_history": hist,
    "cate_history": np.where(real, hist % CATES, -1).astype(np.int32),
    "label": (rng.random(batch) < 0.5).astype(np.float32),
  }


def peak_bytes(compiled) -> int:
  m = compiled.memory_analysis()
  return int(
    m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--lengths", default="100,1000,10000")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--budget_gb", type=float, default=4.0)
  args = parser.parse_args()
  budget = int(args.budget_gb * 2**30)
  result: dict = {"din": {}, "sim": {}, "batch": args.batch, "budget_bytes": budget}
  for length in [int(x) for x in args.lengths.split(",")]:
    batch = make_batch(args.batch, length)
    runs = {}
    for name in ("din", "sim"):
      step, params = make_step(name)
      key = jax.random.key(1)
      tables = {
        "item": 0.05 * jax.random.normal(key, (ITEMS, DIM)),
        "cate": 0.05 * jax.random.normal(key, (CATES, DIM)),
      }
      compiled = step.lower(params, tables, batch).compile()
      est = peak_bytes(compiled)
      if est > budget:
        result[name][str(length)] = {"fits": False, "peak_bytes": est}
        print(name, length, "does not fit:", est, flush=True)
        continue
      state = [params, tables]

      def once(compiled=compiled, state=state):
        state[0], state[1], loss = compiled(state[0], state[1], batch)
        jax.block_until_ready(loss)

      once()
      once()
      runs[name] = (once, est)
    times = {n: [] for n in runs}
    for _ in range(args.steps):  # alternate the models: both see the same machine load
      for n, (once, _) in runs.items():
        t = time.perf_counter()
        once()
        times[n].append(time.perf_counter() - t)
    for n, (_, est) in runs.items():
      result[n][str(length)] = {
        "step_seconds": statistics.median(times[n]),
        "step_seconds_min": min(times[n]),
        "step_seconds_max": max(times[n]),
        "peak_bytes": est,
      }
      print(n, length, result[n][str(length)], flush=True)
  common.emit(result)


if __name__ == "__main__":
  main()
