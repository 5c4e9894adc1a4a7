"""The pure train and eval steps, and the dense optimizer.

One jitted step updates three things: dense parameters (optax), embedding rows (sparse
optimizers, only the rows the batch touches, through `backends.Tables`) and the step
counter. The whole `TrainState` is donated, so tables are updated in place and a step
costs the same at 2^18 or 2^24 rows.

The steps are module-level functions of (state, batch, ids); everything static (the
network's graph, the optimizer, the tables' layout, schedule, seed) is in a `StepFns`
bound once with `functools.partial` (see `jit_steps`), so each step is traced once.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxctr import exchange as exchange_lib
from jaxctr import guards
from jaxctr.embeddings import regularization
from jaxctr.models import split_output
from jaxctr.state import TrainState

SCHEDULES = ("constant", "linear", "cosine")


def make_optimizer(cfg, params=None) -> optax.GradientTransformation:
  """The optax optimizer of the dense parameters (``config.optimizer``).

  This is the hook for per-parameter treatment: ``params`` is the network's
  ``nnx.Param`` state, so a caller may wrap the result (e.g. ``optax.multi_transform``
  over a label tree built from ``params``). The learning-rate schedule and the plateau
  factor are applied by `train_step` on top of the updates.
  """
  del params  # every dense parameter gets the same optimizer here
  makers = {
    "adam": lambda: optax.adam(cfg.learning_rate),
    "adamw": lambda: optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay),
    "sgd": lambda: optax.sgd(cfg.learning_rate),
    "adagrad": lambda: optax.adagrad(cfg.learning_rate),
  }
  if cfg.name not in makers:
    raise ValueError(
      f"config.optimizer.name: unknown {cfg.name!r}; expected one of {sorted(makers)}"
    )
  tx = makers[cfg.name]()
  if cfg.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx


def make_schedule(kind: str, total_steps: int) -> Callable[[jax.Array], jax.Array]:
  """Learning-rate factor at a step for ``config.lr_schedule`` (dense and sparse alike)."""
  if kind not in SCHEDULES:
    raise ValueError(f"config.lr_schedule: unknown {kind!r}; expected constant|linear|cosine")
  total = max(total_steps, 1)

  def scale(step: jax.Array) -> jax.Array:
    frac = jnp.minimum(step.astype(jnp.float32) / total, 1.0)
    if kind == "linear":
      return 1.0 - frac
    if kind == "cosine":
      return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return jnp.ones((), jnp.float32)

  return scale


@dataclasses.dataclass(frozen=True, eq=False)
class StepFns:
  """The static pieces of a step, built once per run.

  Attributes:
    graphdef: The network's `nnx.GraphDef` (see `jaxctr.features.CTRNetwork`).
    tx: The dense optimizer.
    tables: The embedding tables' backends (`jaxctr.embeddings.backends.Tables`).
    schedule: Learning-rate factor of a step (`make_schedule`).
    seed: Seed of the dropout keys.
    l2: Embedding L2 coefficient (``config.embedding.l2``).
    l2_mode: "sparse" or "dense".
    compute_dtype: dtype of the dense network's arithmetic (``config.compute_dtype``);
      parameters, optimizer state, losses and metrics stay float32 (Flax's
      ``dtype``/``param_dtype`` split, applied by casting at the step's entry).
    exchange: The rows|partials exchange of sharded tables (`jaxctr.exchange`); None: rows.
    skip_nonfinite: A step whose loss or gradients are not finite changes nothing but the
      step counter (``config.on_nonfinite="skip"``; `jaxctr.guards`). It selects between
      the old and new state with ``where``, which costs a pass over the tables.
  """

  graphdef: Any
  tx: optax.GradientTransformation
  tables: Any
  schedule: Callable[[jax.Array], jax.Array]
  seed: int
  l2: float = 0.0
  l2_mode: str = "sparse"
  compute_dtype: str = "float32"
  exchange: Any = None
  skip_nonfinite: bool = False

  @property
  def partials(self) -> bool:
    return self.exchange is not None and self.exchange.mode == "partials"

  def network(self, params, rest):
    # copy=True: a fresh module per trace, so batch-norm statistics can be updated inside jit.
    return nnx.merge(self.graphdef, self.cast(params), rest, copy=True)

  def cast(self, tree):
    """Floating leaves of ``tree`` in the compute dtype (a no-op for float32)."""
    if self.compute_dtype == "float32":
      return tree
    dt = jnp.dtype(self.compute_dtype)
    return jax.tree.map(
      lambda x: x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


def loss_fn(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean sigmoid cross-entropy, computed in float32 whatever the compute dtype."""
  return optax.sigmoid_binary_cross_entropy(
    logits.astype(jnp.float32), labels.astype(jnp.float32)
  ).mean()


def train_step(state: TrainState, batch, ids, *, fns: StepFns) -> tuple[TrainState, dict]:
  """One step on a batch: dense and sparse updates; returns (new state, {"loss": ...})."""
  step = state.step + 1
  tables = fns.tables
  rows = tables.gather(state.emb, ids)
  dropout_key = jax.random.fold_in(jax.random.key(fns.seed + 1), step)

  def objective(params, rows):
    net = fns.network(params, state.rest)
    rngs = nnx.Rngs(dropout=dropout_key)
    if fns.partials:  # owners' per-sample partial sums instead of rows (jaxctr.exchange)
      out = exchange_lib.logits(
        fns.exchange, net, tables.collection, rows, ids, batch, train=True, rngs=rngs
      )
    else:
      out = net(fns.cast(tables.assemble(rows, ids)), fns.cast(batch), train=True, rngs=rngs)
    logits, aux = split_output(out)  # behaviour models add auxiliary loss terms
    _, _, rest = nnx.split(net, nnx.Param, ...)
    rest = jax.tree.map(lambda new, old: new.astype(old.dtype), rest, state.rest)
    loss = loss_fn(logits, batch["label"])
    if aux:
      loss = loss + net.model.aux_loss(aux, logits.astype(jnp.float32), batch["label"])
    return loss, rest

  (loss, rest), (g_params, g_rows) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(
    state.params, rows
  )
  flags = guards.step_flags(loss, g_params, g_rows, batch)  # read by guards.NonFiniteMonitor
  updates, opt_state = fns.tx.update(g_params, state.opt_state, state.params)
  lr_scale = fns.schedule(step) * state.lr_factor
  updates = jax.tree.map(lambda u: u * lr_scale, updates)  # Adam & co.: scaling = lr factor
  params = optax.apply_updates(state.params, updates)
  emb_ids, g_rows = regularization.add_l2(
    tables.collection, state.emb, ids, rows, g_rows, fns.l2, fns.l2_mode
  )
  emb = tables.apply_gradients(state.emb, emb_ids, g_rows, step, lr_scale)
  new = state.replace(step=step, params=params, rest=rest, opt_state=opt_state, emb=emb)
  if fns.skip_nonfinite:  # a bad batch changes nothing but the step counter
    new = guards.keep_if_finite(flags["finite"], new, state)
  return new, {"loss": loss, **flags}


def eval_step(state: TrainState, batch, ids, *, fns: StepFns) -> jax.Array:
  """Predicted click probabilities (float32) of a batch; the state is only read."""
  net = fns.network(state.params, state.rest)
  if fns.partials:
    rows = fns.tables.gather(state.emb, ids)
    out = exchange_lib.logits(
      fns.exchange, net, fns.tables.collection, rows, ids, batch, train=False
    )
  else:
    out = net(fns.cast(fns.tables.eval_features(state.emb, ids)), fns.cast(batch), train=False)
  return jax.nn.sigmoid(split_output(out)[0].astype(jnp.float32))


def jit_steps(fns: StepFns, eval_out_sharding=None):
  """(train_step, eval_step) bound to ``fns`` and jitted once; the train state is donated."""
  train = jax.jit(functools.partial(train_step, fns=fns), donate_argnums=(0,))
  evaluate = jax.jit(functools.partial(eval_step, fns=fns), out_shardings=eval_out_sharding)
  return train, evaluate
