"""Training and evaluation loop.

One jitted, pure train step updates three things: dense parameters (optax),
embedding rows (sparse optimizers, only the rows the batch touches) and the
step counter. The whole state is donated, so tables are updated in place and a
step costs the same at 2^18 or 2^24 rows.

Host work runs in a background thread ahead of the step: reading the batch,
deduplicating its ids (`EmbeddingCollection.prepare`) and transferring it to
the devices, so it overlaps with the device computation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from jaxctr import bounds, guards, hostmem, models, optim, parallel
from jaxctr import checkpoint as ckpt_lib
from jaxctr import crosses as crosses_lib
from jaxctr import data as data_lib
from jaxctr import exchange as exchange_lib
from jaxctr import features as features_lib
from jaxctr import metrics as metrics_lib
from jaxctr.early_stopping import EarlyStopping, plateau_factor
from jaxctr.embeddings import offload as offload_lib
from jaxctr.embeddings import planner, regularization, sharded
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.summary import SummaryWriter


class Trainer:
  """Everything a run needs, built once from the config and the dataset."""

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

    group = config.dataset.group_feature
    if group and group not in [f.name for f in self.features if f.kind == "categorical"]:
      raise ValueError(
        f"config.dataset.group_feature: {group!r} is not a categorical feature of "
        f"{config.dataset.name}"
      )
    model_cls = models.get_model_class(config.model)
    # Sequence pooling of this run (behaviour models read unpooled [B, L, D] histories).
    self.features = features_lib.model_features(self.features, model_cls, config.sequence_pooling)
    self.id_keys = features_lib.id_columns(model_cls, self.features)
    cat_features = [f for f in self.features if f.kind != "numeric"]
    dim = features_lib.table_dim(
      model_cls, config.embed_dim, len(cat_features), config.model_config
    )
    tables = features_lib.table_specs(self.features, config.embedding, dim)
    emb_features = list(self.features)
    # Hashed cross products: Wide & Deep's cross weights, OptInter's memorized pairs.
    self.crosses = crosses_lib.from_model_config(
      config.model_config, self.features, tables[0], dim, seed=config.seed
    )
    for cross in self.crosses:
      emb_features.append(cross.feature())
      cross_opt = features_lib.optimizer_spec(config.embedding, cross.key, self.features)
      tables.append(cross.table(cross_opt))
    offloaded = offload_lib.offloaded_tables(config.offload, tables)
    self.plan = self._plan_sharding(emb_features, tables, offloaded)
    self.collection = EmbeddingCollection(
      emb_features,
      tables,
      stack_tables=config.embedding.stack_tables,
      granule=config.embedding.dedup_granule,
      seed=config.seed,
      groups={**self.plan.strategies, **offloaded},
    )
    self.placement = sharded.MeshPlacement(self.mesh, self.table_axes)
    self.collection.shard(
      self.placement,
      row_placement=config.embedding.row_placement,
      group_size=self.group_size,
    )
    self.offload = None
    if config.offload.enabled:  # every row on the host, the hot rows in a device cache
      oc = config.offload
      self.offload = offload_lib.OffloadManager(
        self.collection,
        self.mesh,
        jax.random.fold_in(jax.random.key(config.seed), 1),  # the key init_state uses
        cache_fraction=oc.cache_fraction,
        cache_rows=oc.cache_rows,
        policy=oc.policy,
        depth=max(config.prefetch, 1),
        disk_dir=os.path.expanduser(oc.disk_dir),
      )
    rngs = nnx.Rngs(config.seed)
    encoder = features_lib.FeatureEncoder(
      self.features,
      model_cls.needs_linear,
      rngs=rngs,
      collection=self.collection,
      numeric=config.numeric,
      dim=dim,
      dataset=self.dataset,
    )
    model = models.build(
      config.model,
      config.model_config,
      num_fields=encoder.num_fields,
      embed_dim=config.embed_dim,
      num_dense=encoder.num_dense,
      seed=config.seed,
    )
    network = features_lib.CTRNetwork(encoder, model)
    # rows|partials exchange of sharded tables (config.embedding.exchange; see jaxctr/exchange.py)
    self.exchange = exchange_lib.choose(
      config, self.collection, encoder, model, offload=self.offload, crosses=self.crosses
    )
    self.graphdef, params, rest = nnx.split(network, nnx.Param, ...)
    # AutoFIS: gRDA on the "gates" leaves when config.optimizer.gates asks (jaxctr/optim.py).
    self.tx = optim.with_gate_optimizer(make_optimizer(config.optimizer), config)
    self.num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    self._params, self._rest = params, rest
    self._train_step = jax.jit(self._train_step_impl, donate_argnums=(0,))
    # Predictions come back replicated, so every process can read all of them.
    self._eval_step = jax.jit(self._eval_step_impl, out_shardings=parallel.replicated(self.mesh))
    self._train_watch = hostmem.CompileWatch(self._train_step, reuse)

  @property
  def table_axes(self) -> tuple[str, ...]:
    """Mesh axes sharded tables are split over; the batch must be split over the same."""
    rules = dict(self.rules)
    axes = parallel.as_axes(rules.get("table_shard", rules.get("batch")))
    if axes != parallel.as_axes(rules.get("batch")):
      raise ValueError(
        f"sharding recipe {self.recipe.name!r}: 'table_shard' {axes} must map to the same mesh "
        f"axes as 'batch' {parallel.as_axes(rules.get('batch'))}"
      )
    return axes

  @property
  def group_size(self) -> int:
    """Devices per group of table_row_wise (config, else the recipe's row_group, else a host)."""
    if self.config.embedding.row_group_size:
      return self.config.embedding.row_group_size
    row_group = parallel.as_axes(dict(self.rules).get("row_group"))
    if row_group:
      return int(np.prod([self.mesh.shape[a] for a in row_group]))
    return min(jax.local_device_count(), self.mesh.size)

  def _plan_sharding(self, features, tables, offloaded) -> planner.Plan:
    """Strategies per table: config/recipe default, user pins, then the memory budget."""
    cfg = self.config.embedding
    default = cfg.strategy or self.recipe.strategy
    probe = EmbeddingCollection(features, tables, stack_tables=False)  # physical tables only
    costs, pins = [], {}
    for c in planner.table_costs(probe.tables.values()):
      if c.name in offloaded:  # only the device cache counts; caches are split row-wise
        oc = self.config.offload
        rows = oc.cache_rows or max(int(c.rows * oc.cache_fraction), 1)
        c = dataclasses.replace(c, name=c.name + " (cache)", rows=min(rows, c.rows))
        pins[c.name] = "row_wise"
      costs.append(c)
    ids_per_device = self.config.batch_size * sum(f.width for f in probe.features)
    lookup = 4 * ids_per_device * max(t.dim for t in tables) * 4 // self.mesh.size
    pins.update(cfg.per_table_strategy)
    if self.mesh.size == 1:  # one device: every strategy is the same layout
      pins = {}
    plan = planner.plan(
      costs,
      self.mesh.size,
      default=default if self.mesh.size > 1 else "data_parallel",
      pins=pins,
      budget=cfg.device_memory_budget,
      group_size=self.group_size,
      lookup_bytes=lookup,
    )
    plan.strategies = {k: v for k, v in plan.strategies.items() if not k.endswith(" (cache)")}
    return plan

  def lr_scale(self, step: jax.Array) -> jax.Array:
    """Learning-rate factor of ``config.lr_schedule`` at ``step`` (dense and sparse alike)."""
    kind = self.config.lr_schedule
    total = max(self.total_steps, 1)
    frac = jnp.minimum(step.astype(jnp.float32) / total, 1.0)
    if kind == "constant":
      return jnp.ones((), jnp.float32)
    if kind == "linear":
      return 1.0 - frac
    if kind == "cosine":
      return 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    raise ValueError(f"config.lr_schedule: unknown {kind!r}; expected constant|linear|cosine")

  @property
  def total_steps(self) -> int:
    return self.config.total_steps or self.config.num_epochs * self.steps_per_epoch()

  # ------------------------------------------------------------------ state
  def init_state(self) -> dict[str, Any]:
    key = jax.random.key(self.config.seed)
    state = {
      "step": jnp.zeros((), jnp.int32),
      "params": self._params,
      "rest": self._rest,
      "opt_state": self.tx.init(self._params),
      "emb": (self.offload.init_emb if self.offload else self.collection.init)(
        jax.random.fold_in(key, 1)
      ),
      # Reduce-on-plateau factor: a traced leaf (no recompiles) that checkpoints with the state.
      "lr_factor": jnp.ones((), jnp.float32),
    }
    emb = state.pop("emb")
    state = jax.tree.map(lambda x: parallel.put_global(x, self.mesh), state)
    state["emb"] = self.collection.shard_state(
      emb, lambda x, spec: parallel.put_global(x, self.mesh, spec)
    )
    return state

  def _network(self, params, rest):
    # copy=True: a fresh module per trace, so batch-norm statistics can be updated inside jit.
    return nnx.merge(self.graphdef, params, rest, copy=True)

  def _train_step_impl(self, state, batch, ids):
    step = state["step"] + 1
    rows = self.collection.gather(state["emb"], ids)
    dropout_key = jax.random.fold_in(jax.random.key(self.config.seed + 1), step)

    def loss_fn(params, rows):
      net = self._network(params, state["rest"])
      out = exchange_lib.logits(
        self.exchange,
        net,
        self.collection,
        rows,
        ids,
        batch,
        train=True,
        rngs=nnx.Rngs(dropout=dropout_key),
      )
      loss = features_lib.training_loss(net, out, batch["label"])  # + model aux terms
      _, _, rest = nnx.split(net, nnx.Param, ...)
      return loss, rest

    (loss, rest), (g_params, g_rows) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
      state["params"], rows
    )
    flags = guards.step_flags(loss, g_params, g_rows, batch)
    updates, opt_state = self.tx.update(g_params, state["opt_state"], state["params"])
    lr_scale = self.lr_scale(step) * state["lr_factor"]
    updates = jax.tree.map(lambda u: u * lr_scale, updates)  # Adam & co.: scaling = lr factor
    params = optax.apply_updates(state["params"], updates)
    emb_cfg = self.config.embedding
    emb_ids, g_rows = regularization.add_l2(
      self.collection, state["emb"], ids, rows, g_rows, emb_cfg.l2, emb_cfg.l2_mode
    )
    emb = self.collection.apply_gradients(state["emb"], emb_ids, g_rows, step, lr_scale)
    new_state = {"step": step, "params": params, "rest": rest, "opt_state": opt_state, "emb": emb}
    new_state["lr_factor"] = state["lr_factor"]
    if self.config.on_nonfinite == "skip":  # a bad batch changes nothing but the step
      new_state = guards.keep_if_finite(flags["finite"], new_state, state)
    return new_state, {"loss": loss, **flags}

  def _eval_step_impl(self, state, batch, ids):
    if self.offload is not None:  # offloaded stacks: the batch's rows from the host store
      state = self.offload.eval_view(state, ids)
    mini = frozenset(self.offload.stacks) if self.offload is not None else frozenset()
    rows = self.collection.gather(state["emb"], ids, mini)
    net = self._network(state["params"], state["rest"])
    out = exchange_lib.logits(
      self.exchange, net, self.collection, rows, ids, batch, train=False, replicated=mini
    )
    return jax.nn.sigmoid(models.split_output(out)[0])

  # ------------------------------------------------------------------- data
  def _device_batch(self, batch):
    for cross in self.crosses:
      batch = dict(batch, **{cross.key: cross.ids(batch)})
    ids = exchange_lib.prepare(self.exchange, self.collection, batch)
    keys = ("label", "num", "mask", *self.id_keys)  # raw ids: search keys of behaviour models
    dev = parallel.put_batch({k: batch[k] for k in keys if k in batch}, self.mesh, self.rules)
    if self.offload is not None:  # stage 2 rewrites the ids into cache slots, then transfers
      return dev, ids, batch
    return dev, exchange_lib.put_ids(self.exchange, self.collection, ids, self.mesh), batch

  def batches(self, split: str, *, train: bool, start_step: int = 0) -> Iterator:
    cfg = self.config
    loader = data_lib.Loader(
      self.dataset.split(split),
      cfg.batch_size if train else cfg.eval_batch_size,
      shuffle=train and cfg.shuffle,
      seed=cfg.seed,
      num_epochs=None if train else 1,
      drop_remainder=train,
      start_step=start_step,
      # Every process reads the whole global batch: host-side dedup and the id
      # exchange of sharded tables need all of its ids; each process then places
      # only its devices' slices (see parallel.put_batch).
      shard_index=0,
      num_shards=1,
      prefetch=cfg.prefetch,
      in_memory=not cfg.dataset.streaming,
      window_chunks=cfg.dataset.shuffle_window,
    )
    items = data_lib.prefetch(loader, cfg.prefetch, self._device_batch)
    if self.offload is not None:  # stage 2: plan the cache, gather and transfer missing rows
      return self.offload.pipeline(items, train=train)
    return items

  def steps_per_epoch(self) -> int:
    return self.dataset.info.num_examples["train"] // self.config.batch_size

  def train_step(self, state, dev_batch):
    batch, ids, _ = dev_batch[:3]
    if self.offload is not None:  # the batch's missing rows enter the cache first
      state = self.offload.swap(state, dev_batch[3])
    out = self._train_step(state, batch, ids)
    self._train_watch.after_call()
    return out

  def evaluate(self, state, split: str) -> dict[str, float]:
    """Exact metrics over the whole split."""
    if self.offload is not None:  # eval reads offloaded rows from the (then current) host store
      self.offload.flush(state)
    # Evaluation's larger batches would grow a heap that kept the training step's memory:
    # return that memory first; the next training step settles the heap again.
    self._train_watch.release()
    labels, probs, groups = [], [], []
    group = self.config.dataset.group_feature or getattr(self.dataset.info, "group_feature", None)
    cat_names = [f.name for f in self.features if f.kind == "categorical"]
    for batch, ids, host in self.batches(split, train=False):
      p = np.asarray(self._eval_step(state, batch, ids))
      keep = host["mask"] > 0 if "mask" in host else slice(None)
      labels.append(host["label"][keep])
      probs.append(p[keep])
      if group:
        groups.append(host["cat"][keep, cat_names.index(group)])
    groups_arr = np.concatenate(groups) if group else None
    return metrics_lib.compute(
      np.concatenate(labels), np.concatenate(probs), prefix=split, groups=groups_arr
    )


def make_optimizer(cfg) -> optax.GradientTransformation:
  """Optax optimizer for the dense parameters."""
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


def layouts_meta(trainer: Trainer) -> dict[str, str]:
  """The sharded stacks' layouts, saved with every checkpoint."""
  return {name: lay.to_json() for name, lay in trainer.collection.layouts.items()}


def restore_state(trainer: Trainer, ckpt: ckpt_lib.Checkpointer, state):
  """Restores ``state`` from ``ckpt``, re-laying-out tables saved on another mesh.

  A checkpoint stores sharded tables in their physical layout. When the saved
  layouts (meta ``"layouts"``) differ from this run's (other device count or
  strategy), every table is mapped to its virtual rows and placed anew, so
  8 -> 4 -> 1 devices (or 1 -> 8) restore the same model.
  """
  if trainer.offload is not None:
    return trainer.offload.restore(ckpt, state)
  meta = ckpt.read_meta()
  saved = meta.get("layouts", {})
  if saved == layouts_meta(trainer):
    return ckpt.restore(state)
  leaves = ckpt.restore_leaves()
  mesh = trainer.mesh
  flat, treedef = jax.tree_util.tree_flatten_with_path(state)
  out = []
  for path, leaf in flat:
    key = jax.tree_util.keystr(path)
    if key not in leaves:
      raise ckpt_lib.CheckpointError(
        f"checkpoint {ckpt.directory} has no {key}: it is from another model/config"
      )
    value = leaves[key]
    spec = getattr(leaf.sharding, "spec", None)
    if key.startswith("['emb']"):
      stack = jax.tree_util.keystr(path[1:2])[2:-2]
      if stack in saved:
        value = sharded.Layout.from_json(saved[stack]).to_virtual(value)
      if stack in trainer.collection.layouts:
        value = trainer.collection.layouts[stack].to_physical(value)
    if value.shape != leaf.shape:
      raise ckpt_lib.CheckpointError(
        f"checkpoint {ckpt.directory}: {key} is {value.shape}, this run needs {leaf.shape}"
      )
    out.append(parallel.put_global(value.astype(leaf.dtype), mesh, spec))
  logging.info(
    "restored %s with a new table layout (%d -> %d devices)",
    ckpt.directory,
    next((sharded.Layout.from_json(v).num_shards for v in saved.values()), 1),
    mesh.size,
  )
  return jax.tree_util.tree_unflatten(treedef, out), meta


def init_tables_from(state, path: str):
  """Copies embedding tables (not optimizer slots) from another run's checkpoint.

  ``path`` is a workdir (its ``best/`` checkpoint is preferred, then
  ``checkpoints/``) or a checkpoint directory. Used by FNN to start from a
  trained FM's tables; the tables must have the same layout (features,
  embed_dim, first-order column).
  """
  path = os.path.abspath(os.path.expanduser(path))
  for sub in ("best", "checkpoints", ""):
    d = os.path.join(path, sub) if sub else path
    if os.path.isdir(d) and ckpt_lib.Checkpointer(d, async_save=False).latest_step() is not None:
      break
  else:
    raise ValueError(f"config.model_config.init_from_fm: no checkpoint under {path}")
  saved = ckpt_lib.Checkpointer(d, async_save=False).restore_leaves()
  emb = dict(state["emb"])
  for stack, entry in emb.items():
    key = f"['emb']['{stack}']['table']"
    if key not in saved:
      raise ValueError(f"config.model_config.init_from_fm: {d} has no table {stack!r}")
    table = entry["table"]
    if saved[key].shape != table.shape:
      raise ValueError(
        f"config.model_config.init_from_fm: table {stack!r} is {saved[key].shape} in {d} but "
        f"{table.shape} here (same features and embed_dim needed)"
      )
    emb[stack] = dict(entry, table=jax.device_put(saved[key].astype(table.dtype), table.sharding))
  logging.info("initialised %d embedding stacks from %s", len(emb), d)
  return dict(state, emb=emb)


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None, dataset=None
) -> dict[str, Any]:
  """Trains, evaluates and checkpoints; resumes from ``workdir`` if it has a checkpoint.

  Args:
    config: A config built on `jaxctr.configs.base_config`.
    workdir: Checkpoints, ``metrics.jsonl`` and TensorBoard events go here.
    stop_at_step: Stop (after checkpointing) once this step is reached, as a
      preempted job would; a later call resumes.
    dataset: A prepared dataset (defaults to loading ``config.dataset``).

  Returns:
    The final metrics: test (and valid) AUC/logloss, oracle AUC when the
    dataset knows it, steps, examples/s and parameter counts.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  trainer = Trainer(config, dataset=dataset)
  steps_per_epoch = trainer.steps_per_epoch()
  if steps_per_epoch < 1:
    raise ValueError(
      f"config.batch_size={config.batch_size} exceeds the training split "
      f"({trainer.dataset.info.num_examples['train']} examples)"
    )
  bounds.check_trainer(trainer)  # tables and batches that cannot fit: refused, with numbers
  total_steps = trainer.total_steps
  trainer.lr_scale(jnp.zeros((), jnp.int32))  # validates config.lr_schedule before training
  regularization.check_mode(config.embedding.l2_mode)
  if config.embedding.l2 and config.embedding.l2_mode == "dense" and trainer.collection.layouts:
    raise ValueError(
      "config.embedding.l2_mode='dense' updates every row of every table each step; it needs "
      f"replicated tables, but {sorted(trainer.collection.layouts)} are sharded "
      "(use l2_mode='sparse' or the data_parallel strategy)"
    )
  if not 0 < config.lr_plateau.factor <= 1 or config.lr_plateau.patience < 1:
    raise ValueError(
      "config.lr_plateau: factor must be in (0, 1] and patience >= 1, got "
      f"{config.lr_plateau.factor} and {config.lr_plateau.patience}"
    )
  eval_every = config.eval_every_steps or steps_per_epoch
  ckpt_every = config.checkpoint.every_steps or eval_every
  es_cfg = config.early_stopping
  stopper = EarlyStopping(es_cfg.monitor, es_cfg.mode, es_cfg.patience)

  guard = guards.NonFiniteMonitor(
    config.on_nonfinite,
    [f.name for f in trainer.features if f.kind == "numeric"],
    steps_per_epoch,
    {st.name: tuple(t.name for t in st.tables) for st in trainer.collection.stacks},
  )
  state = trainer.init_state()
  ckpt = best_ckpt = None
  if config.checkpoint.enabled:
    ckpt = ckpt_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"),
      max_to_keep=config.checkpoint.max_to_keep,
      async_save=config.checkpoint.async_save,
    )
    best_ckpt = ckpt_lib.Checkpointer(
      os.path.join(workdir, "best"), max_to_keep=1, async_save=config.checkpoint.async_save
    )
    if ckpt.latest_step() is not None:
      state, meta = restore_state(trainer, ckpt, state)
      stopper = EarlyStopping(
        es_cfg.monitor, es_cfg.mode, es_cfg.patience, meta.get("best"), meta.get("bad_evals", 0)
      )
      guard.skipped = meta.get("nonfinite_skipped", 0)
  init_from = config.model_config.get("init_from_fm", "")
  if init_from and int(state["step"]) == 0:
    state = init_tables_from(state, init_from)
  start_step = int(state["step"])
  writer = SummaryWriter(workdir, enabled=jax.process_index() == 0)
  logging.info(
    "model=%s dense_params=%d table_bytes=%d steps %d->%d (%d/epoch) devices=%d",
    config.model,
    trainer.num_params,
    trainer.collection.num_bytes(),
    start_step,
    total_steps,
    steps_per_epoch,
    trainer.mesh.size,
  )
  writer.write_text("config", config.to_json_best_effort(indent=2))
  if jax.process_index() == 0:  # what `jaxctr.export` rebuilds the model from
    with open(os.path.join(workdir, "config.json"), "w") as fh:
      fh.write(config.to_json_best_effort(indent=2))

  def save(step, which):
    guard.check()  # raises before a non-finite update could be saved (stop mode)
    meta = {"best": stopper.best, "bad_evals": stopper.bad_evals, "step": step}
    meta["nonfinite_skipped"] = guard.skipped
    meta["layouts"] = layouts_meta(trainer)
    # Offloaded tables: the cache is flushed and the whole host tables are saved.
    which.save(step, trainer.offload.full_state(state) if trainer.offload else state, meta)

  step = start_step
  stopped_early = False
  timed_examples, timed_seconds = 0, 0.0
  bar = writer.progress(total_steps, initial=start_step, enabled=config.progress_bar)
  batches = trainer.batches("train", train=True, start_step=start_step)
  losses = []
  t_last = None
  try:
    while step < total_steps and not (stop_at_step is not None and step >= stop_at_step):
      dev_batch = next(batches)
      state, out = trainer.train_step(state, dev_batch)
      step += 1
      guard.record(step, out)
      losses.append(out["loss"])
      now = time.perf_counter()
      if t_last is not None and step > start_step + 1:  # skip the compile step
        timed_seconds += now - t_last
        timed_examples += config.batch_size
      t_last = now
      bar.update(1)
      if step % config.log_every_steps == 0 or step == total_steps:
        guard.check()
        loss = float(np.mean([float(x) for x in losses]))
        losses = []
        eps = timed_examples / timed_seconds if timed_seconds else 0.0
        bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{eps:,.0f}")
        offload_stats = trainer.offload.metrics() if trainer.offload else {}  # hit rates, bytes
        writer.scalars(step, {"train_loss": loss, "examples_per_s": eps, **offload_stats})
      if step % eval_every == 0 or step == total_steps:
        guard.check()
        jax.block_until_ready(state)  # steps still running are train time, not eval time
        if step > start_step + 1:
          now = time.perf_counter()
          timed_seconds, t_last = timed_seconds + now - t_last, now
        t_eval = time.perf_counter()
        m = trainer.evaluate(state, "valid")
        is_best = stopper.update(m)
        if (f := plateau_factor(old := float(state["lr_factor"]), stopper, config)) != old:
          state = dict(state, lr_factor=jax.device_put(jnp.float32(f), state["lr_factor"].sharding))
        m.update(
          epoch=step / steps_per_epoch, best=stopper.best, lr_factor=float(state["lr_factor"])
        )
        writer.scalars(step, m)
        logging.info("step %d: %s", step, json.dumps(m))
        if best_ckpt is not None and is_best:
          save(step, best_ckpt)
        if stopper.should_stop:
          stopped_early = True
        t_last = t_last + (time.perf_counter() - t_eval)  # eval time is not train time
      if ckpt is not None and (step % ckpt_every == 0 or stopped_early or step == stop_at_step):
        save(step, ckpt)
      if stopped_early:
        logging.info("early stopping at step %d (best %s=%s)", step, stopper.monitor, stopper.best)
        break
    guard.check()
  finally:
    bar.close()
    batches.close()
    if ckpt is not None:
      ckpt.wait()
      best_ckpt.wait()

  result: dict[str, Any] = {"model": config.model, "step": step}
  if stop_at_step is not None and step < total_steps and not stopped_early:
    result["preempted"] = True
    return result
  if best_ckpt is not None and es_cfg.patience > 0 and best_ckpt.latest_step() is not None:
    # Evaluate the best model, as early stopping intends.
    state, _ = restore_state(trainer, best_ckpt, state)
  result.update(trainer.evaluate(state, "valid"))
  result.update(trainer.evaluate(state, "test"))
  oracle = getattr(trainer.dataset.info, "oracle_auc", None) or {}
  if "test" in oracle:
    result["oracle_auc"] = oracle["test"]
  result.update(
    examples_per_s=timed_examples / timed_seconds if timed_seconds else 0.0,
    dense_params=trainer.num_params,
    table_bytes=trainer.collection.num_bytes(),
    stopped_early=stopped_early,
  )
  if guard.skipped:
    result["nonfinite_skipped"] = guard.skipped
  writer.scalars(step, {k: v for k, v in result.items() if isinstance(v, float)})
  writer.close()
  result["final_state"] = state
  return result
