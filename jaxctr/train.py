"""Training and evaluation: setup, restore, the train/evaluate loop, final evaluation.

`train_and_evaluate` runs four phases (as big_vision's ``train.py`` does):

1. setup (`Trainer`): dataset, mesh, the table plan and backends, the network, the jitted
   steps (`jaxctr.steps`);
2. restore: the latest checkpoint of the workdir, if any (`checkpoint_policy`);
3. the loop: train steps, with periodic logging, evaluation (early stopping and the
   plateau factor, `early_stopping`) and checkpoints;
4. the final evaluation (of the best checkpoint when early stopping is on).

Host work runs in background threads ahead of the step: reading the batch, deduplicating
its ids (`Tables.prepare`) and transferring it (plus whatever the table backends need,
`Tables.pipeline`), so it overlaps with the device computation.

Hook points: the dense optimizer is `steps.make_optimizer(config.optimizer, params)`;
batches come from `Trainer.batches(split, train=..., start_step=...)` (an iterator of
`backends.DeviceBatch`); the eval forward is `Trainer.eval_step` (or `steps.eval_step`
with `Trainer.fns`); table rows are read with `Trainer.tables.read_rows`.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxctr import agreement, bounds, guards, hostmem, optim, parallel, run_stats, steps
from jaxctr import checkpoint as ckpt_lib  # noqa: F401 - tests reach it as train.ckpt_lib
from jaxctr import data as data_lib
from jaxctr import exchange as exchange_lib
from jaxctr import metrics as metrics_lib
from jaxctr import network as network_lib
from jaxctr.checkpoint_policy import CheckpointPolicy, init_tables_from
from jaxctr.early_stopping import EarlyStopping, plateau_factor
from jaxctr.embeddings import backends, regularization
from jaxctr.embeddings.backends import DeviceBatch
from jaxctr.state import TrainState
from jaxctr.steps import make_optimizer  # noqa: F401 - the dense optimizer hook
from jaxctr.summary import SummaryWriter


class Trainer:
  """Everything a run needs, built once from the config and the dataset.

  Attributes:
    tables: The embedding tables' backends (lookup, update, checkpoints, `read_rows`).
    fns: The static pieces of the steps (`steps.StepFns`).
    mesh: The device mesh.
  """

  def __init__(self, config: ml_collections.ConfigDict, dataset=None):
    self.config = config
    self.dataset = dataset or data_lib.load_dataset(
      config.dataset.name,
      os.path.expanduser(config.dataset.data_dir),
      manual_dir=os.path.expanduser(config.dataset.manual_dir) or None,
      builder_kwargs=dict(config.dataset.builder_kwargs),
      overrides=data_lib.config_overrides(config.dataset),
      on_source_change=config.dataset.on_source_change,
    )
    info = self.dataset.info
    self.features = tuple(info.features)
    if config.host_memory not in hostmem.POLICIES:
      raise ValueError(
        f"config.host_memory: {config.host_memory!r}; expected one of {hostmem.POLICIES}"
      )
    if config.host_memory == "reuse":  # best effort this late; jaxctr.main calls it first
      hostmem.share_one_arena()
    reuse = config.host_memory == "reuse" and jax.default_backend() == "cpu"
    hostmem.use_huge_pages(reuse)
    self.recipe = parallel.load_recipe(config.sharding)
    devices = jax.devices()[: config.num_devices] if config.num_devices else None
    self.mesh = parallel.make_mesh(self.recipe, devices)
    self.rules = self.recipe.rules
    _check_group_feature(config, self.features)

    built = network_lib.build(config, self.features, self.dataset, self.mesh, self.recipe)
    self.tables, self.crosses, self.plan = built.tables, built.crosses, built.plan
    self.features, self.id_keys, self.exchange = built.features, built.id_keys, built.exchange
    self.hparams = built.hparams
    self.graphdef = built.graphdef
    self._params, self._rest = built.params, built.rest
    # AutoFIS/OptInter: gRDA on the gates, Adam on architecture weights (config.optimizer.gates).
    self.tx = optim.with_gate_optimizer(make_optimizer(config.optimizer, built.params), config)
    self.num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(built.params))
    self.fns = steps.StepFns(
      graphdef=self.graphdef,
      tx=self.tx,
      tables=self.tables,
      schedule=steps.make_schedule(config.lr_schedule, self.total_steps),
      seed=config.seed,
      l2=config.embedding.l2,
      l2_mode=config.embedding.l2_mode,
      compute_dtype=_compute_dtype(config.compute_dtype),
      exchange=self.exchange,
      skip_nonfinite=config.on_nonfinite == "skip",
    )
    self.local_input = self._choose_input()
    self._iterators = 0  # input iterators made (names their per-batch agreements)
    # Predictions come back replicated, so every process can read all of them.
    self._train_step, self.eval_step = steps.jit_steps(self.fns, parallel.replicated(self.mesh))
    self._train_watch = hostmem.CompileWatch(self._train_step, reuse)

  @property
  def collection(self):
    return self.tables.collection

  @property
  def offload(self):
    """The offload cache manager (None when no table is offloaded); for benchmarks."""
    return self.tables.offload

  def lr_scale(self, step: jax.Array) -> jax.Array:
    """Learning-rate factor of ``config.lr_schedule`` at ``step`` (dense and sparse alike)."""
    return self.fns.schedule(step)

  @property
  def total_steps(self) -> int:
    return self.config.total_steps or self.config.num_epochs * self.steps_per_epoch()

  def steps_per_epoch(self) -> int:
    return self.dataset.info.num_examples["train"] // self.config.batch_size

  def init_state(self) -> TrainState:
    key = jax.random.key(self.config.seed)
    put = lambda x: parallel.put_global(x, self.mesh)
    return TrainState(
      step=put(jnp.zeros((), jnp.int32)),
      params=jax.tree.map(put, self._params),
      rest=jax.tree.map(put, self._rest),
      opt_state=jax.tree.map(put, self.tx.init(self._params)),
      emb=self.tables.init(jax.random.fold_in(key, 1)),
      lr_factor=put(jnp.ones((), jnp.float32)),
    )

  # ------------------------------------------------------------------- data
  def _choose_input(self) -> bool:
    """Whether each process reads only its rows of every batch (``config.per_process_input``).

    Otherwise every process reads, deduplicates and routes the whole global batch and
    places only its devices' slices.
    """
    mode = self.config.per_process_input
    if mode not in ("auto", "on", "off"):
      raise ValueError(f"config.per_process_input: {mode!r}; expected auto|on|off")
    if mode == "off" or (mode == "auto" and jax.process_count() == 1):
      return False
    why = self.tables.local_input_refusal()
    if not why and self.exchange.mode == "partials":
      why = "embedding.exchange='partials' routes per-sample partial sums over the global batch"
    if not why and self.config.embedding.l2 and self.config.embedding.l2_mode == "dense":
      why = "embedding.l2_mode='dense' updates every row from the global batch's ids"
    sharded_axes = {
      b.placement.axes for b in self.tables.backends.values() if hasattr(b, "placement")
    }
    batch_axes = parallel.as_axes(dict(self.rules)["batch"])
    if not why and sharded_axes - {batch_axes}:
      why = f"tables are split over {sorted(sharded_axes)}, the batch over {batch_axes}"
    if not why:
      try:
        for size in (self.config.batch_size, self.config.eval_batch_size):
          parallel.process_rows(self.mesh, self.rules, size)
      except ValueError as e:
        why = str(e)
    if why and mode == "on":
      raise ValueError(f"config.per_process_input='on' is not possible: {why}")
    if why:
      logging.warning(
        "per-process input is off (every process reads the whole global batch): %s", why
      )
      return False
    logging.info("per-process input: each of %d processes reads its rows", jax.process_count())
    return True

  def _device_batch(self, batch, agree=None) -> DeviceBatch:
    for cross in self.crosses:
      batch = dict(batch, **{cross.key: cross.ids(batch)})
    keys = ("label", "num", "mask", *self.id_keys)  # raw ids: search keys of behaviour models
    if self.local_input:  # this process's rows only; ids and rows move inside the step
      n = len(self.mesh.local_devices)
      ids = self.tables.prepare_local(batch, n, self.rules, agree)
      dev = parallel.put_local_batch(
        {k: batch[k] for k in keys if k in batch}, self.mesh, self.rules
      )
      return DeviceBatch(dev, ids, batch)
    if self.exchange.mode == "partials":  # per-sample routing of the owners' partial sums
      ex, coll = self.exchange, self.collection
      ids = exchange_lib.put_ids(ex, coll, exchange_lib.prepare(ex, coll, batch), self.mesh)
    else:
      ids = self.tables.prepare(batch)
    dev = parallel.put_batch({k: batch[k] for k in keys if k in batch}, self.mesh, self.rules)
    return DeviceBatch(dev, ids, batch)

  def batches(self, split: str, *, train: bool, start_step: int = 0) -> Iterator[DeviceBatch]:
    """The batches of ``split`` as the step takes them (train: endless, from ``start_step``)."""
    cfg = self.config
    size = cfg.batch_size if train else cfg.eval_batch_size
    shard, shards = 0, 1
    if self.local_input:  # this process's contiguous rows of every global batch
      lo, hi, _ = parallel.process_rows(self.mesh, self.rules, size)
      shard, shards = lo // (hi - lo), size // (hi - lo)
    loader = data_lib.Loader(
      self.dataset.split(split),
      size,
      shuffle=train and cfg.shuffle,
      seed=cfg.seed,
      num_epochs=None if train else 1,
      drop_remainder=train,
      start_step=start_step,
      # Without per-process input every process reads the whole global batch (host-side
      # dedup and the id routing of sharded tables then see all of its ids) and places
      # only its devices' slices (see parallel.put_batch).
      shard_index=shard,
      num_shards=shards,
      prefetch=cfg.prefetch,
      in_memory=not cfg.dataset.streaming,
      window_chunks=cfg.dataset.shuffle_window,
      input_shards=cfg.dataset.input_shards,
      read_ahead=cfg.dataset.read_ahead,
    )
    fn, cancel = self._device_batch, None
    if self.local_input:  # exchange sizes agreed per batch, per iterator (same order everywhere)
      self._iterators += 1
      agree = agreement.ProcessMax(f"{split}.{self._iterators}")
      fn, cancel = functools.partial(fn, agree=agree), agree.cancel
    items = data_lib.prefetch(loader, cfg.prefetch, fn, cancel)
    return self.tables.pipeline(items, train=train)

  # ------------------------------------------------------------------ steps
  def train_step(self, state: TrainState, dev_batch: DeviceBatch):
    """Backend work due before the step, then the jitted `steps.train_step`."""
    state = state.replace(emb=self.tables.before_step(state.emb, dev_batch.extra))
    out = self._train_step(state, dev_batch.batch, dev_batch.ids)
    self._train_watch.after_call()
    return out

  def evaluate(self, state: TrainState, split: str) -> dict[str, float]:
    """Exact metrics over the whole split."""
    self.tables.before_eval(state.emb)
    # Evaluation's larger batches would grow a heap that kept the training step's memory:
    # return that memory first; the next training step settles the heap again.
    self._train_watch.release()
    labels, probs, groups = [], [], []
    group = self.config.dataset.group_feature or getattr(self.dataset.info, "group_feature", None)
    cat_names = [f.name for f in self.features if f.kind == "categorical"]
    if self.local_input:
      return self._evaluate_local(state, split, group, cat_names)
    for b in self.batches(split, train=False):
      p = np.asarray(self.eval_step(state, b.batch, b.ids))
      keep = b.host["mask"] > 0 if "mask" in b.host else slice(None)
      labels.append(b.host["label"][keep])
      probs.append(p[keep])
      if group:
        groups.append(b.host["cat"][keep, cat_names.index(group)])
    groups_arr = np.concatenate(groups) if group else None
    return metrics_lib.compute(
      np.concatenate(labels), np.concatenate(probs), prefix=split, groups=groups_arr
    )

  def _evaluate_local(self, state, split, group, cat_names) -> dict[str, float]:
    """`evaluate` with per-process input: each process holds only its rows' labels.

    Predictions come back replicated; each process keeps its rows' and the processes'
    parts are gathered once at the end, back in the global batches' row order, so the
    metrics are computed over the same rows in the same order as with one process.
    """
    lo, hi, _ = parallel.process_rows(self.mesh, self.rules, self.config.eval_batch_size)
    parts: dict[str, list[np.ndarray]] = {"label": [], "prob": [], "mask": [], "group": []}
    for b in self.batches(split, train=False):
      parts["prob"].append(np.asarray(self.eval_step(state, b.batch, b.ids))[lo:hi])
      parts["label"].append(np.asarray(b.host["label"]))
      parts["mask"].append(np.asarray(b.host["mask"], np.float32))
      if group:
        parts["group"].append(np.asarray(b.host["cat"][:, cat_names.index(group)]))
    got = {k: np.stack(v) for k, v in parts.items() if v}  # [batches, rows of this process]
    if jax.process_count() > 1:  # [processes, batches, rows] -> global batch order
      from jax.experimental import multihost_utils

      got = multihost_utils.process_allgather(got)
      got = {k: np.swapaxes(np.asarray(v), 0, 1) for k, v in got.items()}
    got = {k: v.reshape(-1) for k, v in got.items()}
    keep = got["mask"] > 0
    return metrics_lib.compute(
      got["label"][keep],
      got["prob"][keep],
      prefix=split,
      groups=got["group"][keep] if group else None,
    )


def _compute_dtype(name: str) -> str:
  if name not in ("float32", "bfloat16", "float16"):
    raise ValueError(f"config.compute_dtype: {name!r}; expected float32|bfloat16|float16")
  return name


def _check_group_feature(config, features) -> None:
  group = config.dataset.group_feature
  if group and group not in [f.name for f in features if f.kind == "categorical"]:
    raise ValueError(
      f"config.dataset.group_feature: {group!r} is not a categorical feature of "
      f"{config.dataset.name}"
    )


def _check_config(config, trainer: Trainer) -> None:
  """Config errors that need the built trainer, raised before any step runs."""
  if trainer.steps_per_epoch() < 1:
    raise ValueError(
      f"config.batch_size={config.batch_size} exceeds the training split "
      f"({trainer.dataset.info.num_examples['train']} examples)"
    )
  bounds.check_trainer(trainer)  # tables and batches that cannot fit: refused, with numbers
  guards.check_mode(config.on_nonfinite)
  regularization.check_mode(config.embedding.l2_mode)
  trainer.tables.check_l2(config.embedding.l2, config.embedding.l2_mode)
  if not 0 < config.lr_plateau.factor <= 1 or config.lr_plateau.patience < 1:
    raise ValueError(
      "config.lr_plateau: factor must be in (0, 1] and patience >= 1, got "
      f"{config.lr_plateau.factor} and {config.lr_plateau.patience}"
    )


def _evaluate_and_adapt(trainer, state, stopper, step, writer):
  """Validation metrics, early stopping and the plateau factor; returns (state, is_best)."""
  config = trainer.config
  m = trainer.evaluate(state, "valid")
  is_best = stopper.update(m)
  old = float(state.lr_factor)
  new = plateau_factor(old, stopper, config)
  if new != old:
    state = state.replace(
      lr_factor=jax.device_put(jnp.asarray(new, jnp.float32), state.lr_factor.sharding)
    )
  m.update(epoch=step / trainer.steps_per_epoch(), best=stopper.best, lr_factor=new)
  writer.scalars(step, m)
  logging.info("step %d: %s", step, json.dumps(m))
  return state, is_best


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None, dataset=None
) -> dict[str, Any]:
  """Trains, evaluates and checkpoints; resumes from ``workdir`` if it has a checkpoint.

  Args:
    config: A config built on `jaxctr.configs.base_config`.
    workdir: Checkpoints, ``metrics.jsonl``, TensorBoard events and the table plan
      (``plan.json``, ``plan.txt``) go here.
    stop_at_step: Stop (after checkpointing) once this step is reached, as a
      preempted job would; a later call resumes.
    dataset: A prepared dataset (defaults to loading ``config.dataset``).

  Returns:
    The final metrics: test (and valid) AUC/logloss, oracle AUC when the
    dataset knows it, steps, examples/s and parameter counts; ``final_state``.
  """
  # ---- setup
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  trainer = Trainer(config, dataset=dataset)
  _check_config(config, trainer)
  if jax.process_index() == 0 and trainer.plan is not None:
    trainer.plan.save(workdir)
  total_steps, steps_per_epoch = trainer.total_steps, trainer.steps_per_epoch()
  eval_every = config.eval_every_steps or steps_per_epoch
  es = config.early_stopping
  guard = guards.NonFiniteMonitor(  # reads the steps' finiteness flags at log/eval/save time
    config.on_nonfinite,
    [f.name for f in trainer.features if f.kind == "numeric"],
    steps_per_epoch,
    {st.name: tuple(t.name for t in st.tables) for st in trainer.collection.stacks},
  )
  ckpts = CheckpointPolicy(workdir, config.checkpoint, trainer.tables, 0, guard=guard)
  ckpts.every = config.checkpoint.every_steps or eval_every

  # ---- restore
  state, meta = ckpts.restore_latest(trainer.init_state())
  guard.skipped = meta.get("nonfinite_skipped", 0)
  stopper = EarlyStopping(
    es.monitor, es.mode, es.patience, meta.get("best"), meta.get("bad_evals", 0)
  )
  hp = trainer.hparams
  if "init_from_fm" in hp and hp.init_from_fm and int(state.step) == 0:
    state = init_tables_from(state, hp.init_from_fm)
  start_step = int(state.step)
  writer = SummaryWriter(workdir, enabled=jax.process_index() == 0)
  logging.info(
    "model=%s dense_params=%d table_bytes=%d steps %d->%d (%d/epoch) devices=%d",
    config.model,
    trainer.num_params,
    trainer.tables.num_bytes(),
    start_step,
    total_steps,
    steps_per_epoch,
    trainer.mesh.size,
  )
  writer.write_text("config", config.to_json_best_effort(indent=2))
  if jax.process_index() == 0:  # what `jaxctr.export` rebuilds the model from
    with open(os.path.join(workdir, "config.json"), "w") as fh:
      fh.write(config.to_json_best_effort(indent=2))

  # ---- train / evaluate
  step, stopped_early, losses = start_step, False, []
  speed = run_stats.Throughput(config.batch_size, start_step)
  reads = run_stats.InputRows(trainer.local_input, config.batch_size)
  bar = writer.progress(total_steps, initial=start_step, enabled=config.progress_bar)
  batches = trainer.batches("train", train=True, start_step=start_step)
  peer_lost = False
  try:
    while step < total_steps and not (stop_at_step is not None and step >= stop_at_step):
      batch = next(batches)
      reads.add(len(batch.host["label"]))
      state, out = trainer.train_step(state, batch)
      step += 1
      guard.record(step, out)
      losses.append(out["loss"])
      speed.tick(step)
      bar.update(1)
      if step % config.log_every_steps == 0 or step == total_steps:
        guard.check()
        loss = float(np.mean([float(x) for x in losses]))
        losses = []
        bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{speed.per_second:,.0f}")
        stats = trainer.tables.metrics()
        writer.scalars(step, {"train_loss": loss, "examples_per_s": speed.per_second, **stats})
      if step % eval_every == 0 or step == total_steps:
        guard.check()
        paused = speed.pause(state, step)  # steps still running are train time, not eval time
        state, is_best = _evaluate_and_adapt(trainer, state, stopper, step, writer)
        ckpts.after_eval(step, state, stopper, is_best)
        stopped_early = stopper.should_stop
        speed.resume(paused)
      ckpts.after_step(step, state, stopper, stopping=stopped_early or step == stop_at_step)
      if stopped_early:
        logging.info("early stopping at step %d (best %s=%s)", step, stopper.monitor, stopper.best)
        break
    guard.check()
  except jax.errors.JaxRuntimeError:
    # In a multi-process job a failed collective means a peer has probably died; an
    # in-flight async save then waits in a cross-process barrier for it until the heartbeat
    # timeout, and JAX aborts the process. The caller ends it at once instead
    # (`cli.exit_on_peer_failure`); a save left unfinished is ignored on restart.
    peer_lost = jax.process_count() > 1
    raise
  finally:
    bar.close()
    batches.close()
    if not peer_lost:
      ckpts.wait()
    reads.write(workdir)

  # ---- final evaluation
  result: dict[str, Any] = {"model": config.model, "step": step}
  if stop_at_step is not None and step < total_steps and not stopped_early:
    result["preempted"] = True
    return result
  if es.patience > 0:  # evaluate the best model, as early stopping intends
    state = ckpts.restore_best(state)
  result.update(trainer.evaluate(state, "valid"))
  result.update(trainer.evaluate(state, "test"))
  oracle = getattr(trainer.dataset.info, "oracle_auc", None) or {}
  if "test" in oracle:
    result["oracle_auc"] = oracle["test"]
  result.update(
    examples_per_s=speed.per_second,
    dense_params=trainer.num_params,
    table_bytes=trainer.tables.num_bytes(),
    stopped_early=stopped_early,
  )
  if guard.skipped:
    result["nonfinite_skipped"] = guard.skipped
  writer.scalars(step, {k: v for k, v in result.items() if isinstance(v, float)})
  writer.close()
  result["final_state"] = state
  return result


__all__ = ["EarlyStopping", "Trainer", "TrainState", "backends", "train_and_evaluate"]
