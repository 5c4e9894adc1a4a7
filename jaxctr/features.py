"""From a dataset's features and the config to tables and model inputs.

This is the glue between the embedding layer (ids -> vectors) and the model
zoo (vectors -> logits): it declares one `TableSpec` per categorical feature
(with its embedding method and storage dtype from ``config.embedding``), and
packs everything into `ModelInputs`, computing the table-free parts (DHE,
numeric encoders) on the way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxctr.crosses import CROSS_KEY, MEMORIZED_KEY
from jaxctr.embeddings import dhe as dhe_lib
from jaxctr.embeddings import numeric as numeric_lib
from jaxctr.embeddings.specs import (
  CATEGORICAL,
  NUMERIC,
  POOLINGS,
  SEQUENCE,
  EncoderSpec,
  FeatureSpec,
  OptimizerSpec,
  SpecError,
  TableSpec,
)
from jaxctr.models.base import CTRModel, ModelInputs, split_output

# Keys of config.embedding that may be overridden per feature/table.
METHOD_KEYS = (
  "method",
  "dtype",
  "num_buckets",
  "bucket_fraction",
  "hot_ids",
  "hot_fraction",
  "qr_combine",
  "hash_seed",
  "dhe_k",
  "dhe_dist",
  "dhe_hidden",
)
# Keys of config.embedding that set a table's sparse optimizer, also overridable per
# feature/table (e.g. FTRL on the wide cross table, row-wise Adagrad on the deep ones).
# FTRL's alpha is `learning_rate`; its l1/l2/beta are prefixed so they do not collide with
# the `l2` table regulariser.
OPTIMIZER_KEYS = (
  "optimizer",
  "learning_rate",
  "init_std",
  "b1",
  "b2",
  "eps",
  "initial_accumulator",
  "weight_decay",
  "clip_norm",
  "ftrl_l1",
  "ftrl_l2",
  "ftrl_beta",
  "ftrl_lr_power",
)


def _method_settings(emb_cfg, table: str, features: Sequence[FeatureSpec]) -> dict:
  """Global settings of ``table`` with its features' then its own per_feature entries."""
  per = dict(emb_cfg.get("per_feature", {}) or {})
  by_name = {f.name: f for f in features}
  for key, over in per.items():
    f = by_name.get(key)
    if f is not None and f.kind == NUMERIC:
      raise SpecError(
        f"config.embedding.per_feature[{key!r}]: {key!r} is a numeric feature; "
        "numeric features are encoded by config.numeric"
      )
    allowed = METHOD_KEYS + OPTIMIZER_KEYS
    if key == CROSS_KEY:  # Wide & Deep's cross table: only its optimizer is configurable
      allowed = OPTIMIZER_KEYS
    elif f is None and all(g.table_name != key for g in features):
      raise SpecError(f"config.embedding.per_feature[{key!r}]: no feature or table {key!r}")
    unknown = set(dict(over)) - set(allowed)
    if unknown:
      raise SpecError(
        f"config.embedding.per_feature[{key!r}]: unknown keys {sorted(unknown)}; "
        f"expected some of {allowed}"
      )
  out = {k: emb_cfg.get(k) for k in METHOD_KEYS + OPTIMIZER_KEYS}
  for f in features:  # a table's own entry wins over its features' entries
    if f.table_name == table and f.name in per and f.name != table:
      out.update(dict(per[f.name]))
  out.update(dict(per.get(table, {})))
  return out


def encoder_spec(settings: dict, vocab: int) -> EncoderSpec:
  """Resolves fractions of the vocabulary into absolute sizes."""
  buckets = int(settings["num_buckets"] or 0)
  if buckets <= 0 and (settings["bucket_fraction"] or 0) > 0:
    buckets = max(1, math.ceil(settings["bucket_fraction"] * vocab))
  hot = int(settings["hot_ids"] or 0)
  if hot <= 0 and (settings["hot_fraction"] or 0) > 0:
    hot = min(vocab - 1, math.ceil(settings["hot_fraction"] * vocab))
  return EncoderSpec(
    method=settings["method"],
    num_buckets=buckets,
    hot_ids=max(hot, 0),
    combine=settings["qr_combine"],
    seed=int(settings["hash_seed"]),
    dhe_k=int(settings["dhe_k"]),
    dhe_dist=settings["dhe_dist"],
    dhe_hidden=tuple(settings["dhe_hidden"]),
  )


def model_features(
  features: Sequence[FeatureSpec], model_cls, pooling: str = ""
) -> tuple[FeatureSpec, ...]:
  """The dataset's features with the pooling of sequence features this run uses.

  ``pooling`` (``config.sequence_pooling``) wins; else a behaviour model's
  ``sequence_pooling`` ("none": unpooled [B, L, D] sequences); else the dataset's
  declared pooling (e.g. a DNN over the sum-pooled history).
  """
  if pooling and pooling not in POOLINGS:
    raise SpecError(f"config.sequence_pooling: unknown {pooling!r}; expected one of {POOLINGS}")
  want = pooling or getattr(model_cls, "sequence_pooling", None)
  if not want:
    return tuple(features)
  return tuple(dataclasses.replace(f, pooling=want) if f.kind == SEQUENCE else f for f in features)


def id_columns(model_cls, features: Sequence[FeatureSpec]) -> tuple[str, ...]:
  """Batch columns a model that ``needs_ids`` reads raw (``cat`` and every sequence)."""
  if not getattr(model_cls, "needs_ids", False):
    return ()
  return ("cat", *(f.name for f in features if f.kind == SEQUENCE))


def training_loss(network, out, labels) -> jax.Array:
  """Mean sigmoid cross-entropy plus the model's auxiliary terms (see `ModelOutput`)."""
  logits, aux = split_output(out)
  loss = optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return loss + network.model.aux_loss(aux, logits, labels)


def table_dim(model_cls, embed_dim: int, num_fields: int, model_config=None) -> int:
  """Row width the model needs: D, D+1 with a first-order column, or model-defined.

  A model's ``table_dim(embed_dim, num_fields[, model_config])`` may read its config
  (CAN's co-action columns depend on its micro-MLP).
  """
  custom = getattr(model_cls, "table_dim", None)
  if custom is not None:
    if getattr(model_cls, "table_dim_reads_config", False):
      return int(custom(embed_dim, num_fields, model_config))
    return int(custom(embed_dim, num_fields))
  return embed_dim + (1 if model_cls.needs_linear else 0)


def _optimizer(st: dict) -> OptimizerSpec:
  return OptimizerSpec(
    name=st["optimizer"],
    learning_rate=float(st["learning_rate"]),
    b1=float(st["b1"]),
    b2=float(st["b2"]),
    eps=float(st["eps"]),
    initial_accumulator=float(st["initial_accumulator"]),
    weight_decay=float(st["weight_decay"]),
    clip_norm=float(st["clip_norm"]),
    l1=float(st["ftrl_l1"]),
    l2=float(st["ftrl_l2"]),
    beta=float(st["ftrl_beta"]),
    lr_power=float(st["ftrl_lr_power"]),
  )


def optimizer_spec(emb_cfg, table: str, features: Sequence[FeatureSpec]) -> OptimizerSpec:
  """The sparse optimizer of ``table``: config.embedding, overridden per feature/table."""
  return _optimizer(_method_settings(emb_cfg, table, features))


def table_specs(features: Sequence[FeatureSpec], emb_cfg, dim: int) -> list[TableSpec]:
  """One table per categorical/sequence feature (features may share via `table`)."""
  sizes: dict[str, int] = {}
  for f in features:
    if f.kind != NUMERIC:
      sizes[f.table_name] = max(sizes.get(f.table_name, 0), f.vocab_size)
  specs = []
  for name, vocab in sizes.items():
    st = _method_settings(emb_cfg, name, features)
    specs.append(
      TableSpec(
        name,
        vocab,
        dim,
        init_std=float(st["init_std"]),
        optimizer=_optimizer(st),
        dtype=st["dtype"],
        encoder=encoder_spec(st, vocab),
      )
    )
  return specs


class FeatureEncoder(nnx.Module):
  """Turns per-feature lookups and numeric values into `ModelInputs`.

  This is the trainable part of the embedding layer that is not a table
  (DHE MLPs, numeric-feature encoders); its parameters train with the dense
  model. With plain tables and raw numeric values it only packs the
  looked-up vectors. Field order: categorical/pooled features, then numeric
  fields (if the numeric encoder makes fields).

  Args:
    features: The dataset's features in column order.
    needs_linear: Split the last table column off as the first-order weight.
    rngs: Initialisation randomness.
    collection: The `EmbeddingCollection` (needed for DHE tables).
    numeric: The ``config.numeric`` section (None: raw values).
    dim: Table row width (needed for DHE and numeric fields).
    numeric_sample: Training rows ``(values [n, N], labels [n])`` that bucketed
      numeric encoders fit their boundaries on (None: boundaries are left for a
      checkpoint restore). The caller reads them from the data; the network does not.
    numeric_stats: The prepared dataset's per-field numeric statistics.
  """

  def __init__(
    self,
    features: Sequence[FeatureSpec],
    needs_linear: bool,
    *,
    rngs: nnx.Rngs,
    collection=None,
    numeric=None,
    dim: int = 0,
    numeric_sample: tuple[np.ndarray, np.ndarray] | None = None,
    numeric_stats: Sequence[Mapping] = (),
  ):
    self.needs_linear = needs_linear
    self.pooled = tuple(
      f.name
      for f in features
      if f.kind == CATEGORICAL or (f.kind == SEQUENCE and f.pooling != "none")
    )
    self.unpooled = tuple(f.name for f in features if f.kind == SEQUENCE and f.pooling == "none")
    cats = [f.name for f in features if f.kind == CATEGORICAL]
    self.id_sources = tuple((f.name, "cat", cats.index(f.name)) for f in features if f.name in cats)
    self.id_sources += tuple((f.name, f.name, -1) for f in features if f.kind == SEQUENCE)
    n_num = sum(f.kind == NUMERIC for f in features)
    groups: dict[EncoderSpec, list[str]] = {}
    for p in collection.dhe if collection is not None else ():
      groups.setdefault(p.table.encoder, []).append(p.feature.name)
    self.dhe_names = tuple(tuple(v) for v in groups.values())
    salts = {f.name: i + 1 for i, f in enumerate(features)}
    self.dhe = nnx.List(
      [
        dhe_lib.DHE(spec, len(names), [salts[n] for n in names], dim, rngs=rngs)
        for spec, names in zip(groups, self.dhe_names, strict=True)
      ]
    )
    num_names = [f.name for f in features if f.kind == NUMERIC]
    kinds = numeric_kinds(numeric, features) if numeric is not None else ["raw"] * n_num
    groups: dict[str, list[int]] = {}
    for j, kind in enumerate(kinds):
      groups.setdefault(kind, []).append(j)
    self.num_groups = tuple(tuple(v) for v in groups.values())
    encs = []
    if any(k != "raw" for k in groups):
      sample, stats = numeric_sample, numeric_stats
      for kind, idx in groups.items():
        sub = (sample[0][:, idx], sample[1]) if sample is not None else None
        st = [stats[j] for j in idx if j < len(stats)] if len(stats) == len(num_names) else ()
        encs.append(
          numeric_lib.NumericEncoder(numeric, len(idx), dim, sub, st, kind=kind, rngs=rngs)
        )
    self.numeric = nnx.List(encs)
    self.num_dense = sum(e.num_dense for e in encs) if encs else n_num
    self._num_fields = sum(e.num_fields for e in encs)

  @property
  def num_fields(self) -> int:
    return len(self.pooled) + self._num_fields

  def __call__(self, feats: Mapping[str, jax.Array], batch, *, train: bool = False) -> ModelInputs:
    del train
    feats = dict(feats)
    for names, module in zip(self.dhe_names, self.dhe, strict=True):
      ids = jnp.stack([feats[n + "/dhe_ids"] for n in names], axis=1)
      vecs = module(ids)
      for i, n in enumerate(names):
        feats[n] = vecs[:, i]
    fields = jnp.stack([feats[n] for n in self.pooled], axis=1)
    dense = batch["num"]
    if len(self.numeric):
      x, dense_parts, field_parts = dense, [], [fields]
      for idx, enc in zip(self.num_groups, self.numeric, strict=True):
        d, extra = enc(x[:, list(idx)])
        dense_parts.append(d)
        if extra is not None:
          field_parts.append(extra.astype(fields.dtype))
      dense = jnp.concatenate(dense_parts, axis=1)
      fields = jnp.concatenate(field_parts, axis=1)
    linear = None
    if self.needs_linear:
      fields, linear = fields[..., :-1], fields[..., -1]
    seqs = {}
    for n in self.unpooled:
      v = feats[n]
      seqs[n] = v[..., :-1] if self.needs_linear else v
      seqs[n + "/mask"] = feats[n + "/mask"]
    # Raw ids ride along only when the trainer put their columns in the batch (a model that
    # `needs_ids`); they are search keys, not embedded.
    ids = {
      name: (batch[col][:, i] if i >= 0 else batch[col])
      for name, col, i in self.id_sources
      if col in batch
    }
    names = self.pooled + tuple(f"numeric{j}" for j in range(self._num_fields))
    return ModelInputs(
      fields=fields, dense=dense, linear=linear, sequences=seqs, field_names=names, ids=ids
    )


def numeric_kinds(cfg, features: Sequence[FeatureSpec]) -> list[str]:
  """The encoder of every numeric feature: ``cfg.encoder`` unless ``cfg.per_feature`` names one."""
  validate_numeric(cfg)
  kinds = {f.name: f.kind for f in features}
  per = dict(cfg.get("per_feature", {}) or {})
  for name, enc in per.items():
    if name not in kinds:
      raise SpecError(f"config.numeric.per_feature[{name!r}]: no feature {name!r}")
    if kinds[name] != NUMERIC:
      raise SpecError(
        f"config.numeric.per_feature[{name!r}]: {name!r} is a {kinds[name]} feature; "
        "config.numeric encodes numeric features only"
      )
    _check_encoder(enc, f"config.numeric.per_feature[{name!r}]")
  return [per.get(f.name, cfg.encoder) for f in features if f.kind == NUMERIC]


def _check_encoder(name: str, where: str) -> None:
  if name not in numeric_lib.ENCODERS:
    raise SpecError(f"{where}: unknown encoder {name!r}; expected one of {numeric_lib.ENCODERS}")


def validate_numeric(cfg) -> None:
  """Checks ``config.numeric``; raises `SpecError` naming the offending key."""
  _check_encoder(cfg.encoder, "config.numeric.encoder")
  if cfg.num_buckets < 2:
    raise SpecError(f"config.numeric.num_buckets must be >= 2, got {cfg.num_buckets}")
  if cfg.encoder == "autodis" and (cfg.autodis_buckets < 1 or cfg.temperature <= 0):
    raise SpecError(
      "config.numeric: autodis needs autodis_buckets >= 1 and temperature > 0, got "
      f"{cfg.autodis_buckets} and {cfg.temperature}"
    )


class CTRNetwork(nnx.Module):
  """The dense half of a CTR model: feature encoder + interaction model."""

  def __init__(self, encoder: FeatureEncoder, model: CTRModel):
    self.encoder = encoder
    self.model = model

  def __call__(self, feats, batch, *, train: bool = False, rngs: nnx.Rngs | None = None):
    inputs = self.encoder(feats, batch, train=train)
    if CROSS_KEY in feats:  # Wide & Deep cross-product weights: [B, P, 1] -> [B, P]
      inputs = inputs.replace(sequences={**inputs.sequences, CROSS_KEY: feats[CROSS_KEY][..., 0]})
    if MEMORIZED_KEY in feats:  # OptInter's memorized pairs: [B, P, D] (no first-order column)
      mem = feats[MEMORIZED_KEY][..., : inputs.fields.shape[-1]]
      inputs = inputs.replace(sequences={**inputs.sequences, MEMORIZED_KEY: mem})
    return self.model(inputs, train=train, rngs=rngs)
