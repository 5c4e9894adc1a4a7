"""From a config and a dataset's features to the tables' backends and the dense network.

`build` is what a trainer and an exporter share: it declares the tables, plans where each
lives (`embeddings.planner`), builds their backends (`embeddings.backends`) and the
`features.CTRNetwork` (feature encoder + model), and splits the network into its graph and
variables (Flax NNX).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxctr import bounds, models, parallel
from jaxctr import crosses as crosses_lib
from jaxctr import exchange as exchange_lib
from jaxctr import features as features_lib
from jaxctr.data import preprocess
from jaxctr.embeddings import backends, planner
from jaxctr.embeddings import numeric as numeric_lib
from jaxctr.embeddings import offload as offload_lib
from jaxctr.embeddings.collection import EmbeddingCollection


@dataclasses.dataclass
class Built:
  """What `build` returns."""

  tables: backends.Tables
  plan: planner.Plan
  crosses: list[crosses_lib.Crosses]  # hashed cross features (Wide & Deep, OptInter)
  features: tuple  # the dataset's features with this run's sequence pooling
  id_keys: tuple[str, ...]  # raw id columns the model reads (behaviour models' search keys)
  exchange: exchange_lib.Exchange  # rows|partials exchange of sharded tables
  hparams: Any  # the model's hyperparameters (declared defaults + config.model_config)
  graphdef: Any  # nnx.GraphDef of the CTRNetwork
  params: Any  # its nnx.Param state
  rest: Any  # its other variables


def table_axes(recipe: parallel.Recipe) -> tuple[str, ...]:
  """Mesh axes sharded tables are split over; the batch must be split over the same."""
  rules = dict(recipe.rules)
  axes = parallel.as_axes(rules.get("table_shard", rules.get("batch")))
  if axes != parallel.as_axes(rules.get("batch")):
    raise ValueError(
      f"sharding recipe {recipe.name!r}: 'table_shard' {axes} must map to the same mesh "
      f"axes as 'batch' {parallel.as_axes(rules.get('batch'))}"
    )
  return axes


def group_size(config, recipe: parallel.Recipe, mesh) -> int:
  """Devices per group of table_row_wise (config, else the recipe's row_group, else a host)."""
  if config.embedding.row_group_size:
    return config.embedding.row_group_size
  row_group = parallel.as_axes(dict(recipe.rules).get("row_group"))
  if row_group:
    return int(np.prod([mesh.shape[a] for a in row_group]))
  return min(jax.local_device_count(), mesh.size)


def plan_tables(config, features, tables, mesh, recipe) -> planner.Plan:
  """Where every table lives: user pins, then the planner's choice within the budget."""
  cfg = config.embedding
  probe = EmbeddingCollection(features, tables, stack_tables=False)  # physical tables only
  # Offload applies to tables with physical rows (a DHE feature has none); a hashed or QR
  # table's physical tables are named `<table>/<part>` and planned under the logical name.
  physical = {n.split("/")[0] for n in probe.tables}
  offloaded = offload_lib.offloaded_tables(config.offload, tables)
  pins = {name: how for name, how in offloaded.items() if name in physical}
  pins.update(cfg.per_table_strategy)
  loads = planner.table_loads(probe, config.batch_size)
  return planner.plan(
    planner.table_costs(probe.tables.values()),
    mesh.size,
    default=cfg.strategy or recipe.strategy,
    pins=pins,
    budget=cfg.device_memory_budget,
    group_size=group_size(config, recipe, mesh),
    loads=loads,
    cache=planner.CacheSpec(config.offload.cache_fraction, config.offload.cache_rows),
  )


def _numeric_fit(config, features, dataset) -> dict[str, Any]:
  """What the numeric encoders fit on: a training sample (bucketed encoders) and statistics.

  Read here, where training data is at hand, so building the network never reads data.
  """
  if dataset is None:
    return {}
  kinds = features_lib.numeric_kinds(config.numeric, features)
  bucketed = any(k in numeric_lib.BUCKETED for k in kinds)
  return {
    "numeric_sample": (
      numeric_lib.training_sample(dataset, config.numeric.sample_size) if bucketed else None
    ),
    "numeric_stats": dataset.info.numeric_stats,
  }


def _check_hashed_ids(dataset, features, tables) -> None:
  """Refuses one-row-per-id tables over raw 64-bit hashed ids, before anything is built."""
  info = getattr(dataset, "info", None)
  if info is None or not getattr(info, "preprocess", None):
    return
  names = tuple(f.name for f in info.categorical)
  modes = dict(
    zip(
      names,
      preprocess.categorical_modes(preprocess.PreprocessConfig(**info.preprocess), names),
      strict=True,
    )
  )
  method = {t.name: t.encoder.method for t in tables}
  bad = [
    f.name
    for f in features
    if modes.get(f.name) == preprocess.HASH and method.get(f.table_name) == "full"
  ]
  if bad:
    raise features_lib.SpecError(
      f"features {bad} hold raw 64-bit hashed ids (prepared with dataset.hash_features), "
      "which a one-row-per-id table cannot index: set config.embedding.method (or "
      "config.embedding.per_feature[<feature>].method) to hashing, double_hashing, qr or dhe"
    )


def build(config, features, dataset, mesh, recipe) -> Built:
  """The tables (planned and placed) and the dense network of ``config``."""
  model_cls = models.get_model_class(config.model)
  hp = models.hyperparameters(config.model, config.model_config)
  # Sequence pooling of this run (behaviour models read unpooled [B, L, D] histories).
  features = features_lib.model_features(features, model_cls, config.sequence_pooling)
  id_keys = features_lib.id_columns(model_cls, features)
  cat_features = [f for f in features if f.kind != "numeric"]
  dim = features_lib.table_dim(model_cls, config.embed_dim, len(cat_features), hp)
  tables = features_lib.table_specs(features, config.embedding, dim)
  _check_hashed_ids(dataset, features, tables)
  emb_features = list(features)
  # Hashed cross products: Wide & Deep's cross weights, OptInter's memorized pairs.
  crosses = crosses_lib.from_model_config(hp, features, tables[0], dim, seed=config.seed)
  for cross in crosses:
    emb_features.append(cross.feature())
    tables.append(cross.table(features_lib.optimizer_spec(config.embedding, cross.key, features)))
  plan = plan_tables(config, emb_features, tables, mesh, recipe)
  # Before the host stores of offloaded tables are allocated and initialised (below).
  bounds.check_host_stores(
    plan, config.offload, mesh.devices.flat, checkpoints=config.checkpoint.enabled
  )
  collection = EmbeddingCollection(
    emb_features,
    tables,
    stack_tables=config.embedding.stack_tables,
    granule=config.embedding.dedup_granule,
    seed=config.seed,
    groups=plan.strategies,
  )
  oc = config.offload
  table_set = backends.build(
    collection,
    mesh,
    table_axes(recipe),
    row_placement=config.embedding.row_placement,
    group_size=group_size(config, recipe, mesh),
    key=jax.random.fold_in(jax.random.key(config.seed), 1),  # the key Trainer.init_state uses
    offload=backends.OffloadSettings(
      oc.cache_fraction, oc.cache_rows, oc.policy, os.path.expanduser(oc.disk_dir)
    ),
    depth=max(config.prefetch, 1),
  )
  rngs = nnx.Rngs(config.seed)
  encoder = features_lib.FeatureEncoder(
    features,
    model_cls.needs_linear,
    rngs=rngs,
    collection=collection,
    numeric=config.numeric,
    dim=dim,
    **_numeric_fit(config, features, dataset),
  )
  model = models.build(
    config.model,
    hp,
    num_fields=encoder.num_fields,
    embed_dim=config.embed_dim,
    num_dense=encoder.num_dense,
    seed=config.seed,
  )
  network = features_lib.CTRNetwork(encoder, model)
  exchange = exchange_lib.choose(
    config, collection, encoder, model, offload=table_set.offload, crosses=crosses
  )
  graphdef, params, rest = nnx.split(network, nnx.Param, ...)
  return Built(
    table_set, plan, crosses, tuple(features), id_keys, exchange, hp, graphdef, params, rest
  )
