"""From a dataset's features and the config to tables and model inputs.

This is the glue between the embedding layer (ids -> vectors) and the model
zoo (vectors -> logits): it declares one `TableSpec` per categorical feature,
and packs everything into `ModelInputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.embeddings.specs import (
  CATEGORICAL,
  NUMERIC,
  SEQUENCE,
  FeatureSpec,
  OptimizerSpec,
  TableSpec,
)
from jaxctr.models.base import CTRModel, ModelInputs


def table_dim(model_cls, embed_dim: int, num_fields: int) -> int:
  """Row width the model needs: D, D+1 with a first-order column, or model-defined."""
  custom = getattr(model_cls, "table_dim", None)
  if custom is not None:
    return int(custom(embed_dim, num_fields))
  return embed_dim + (1 if model_cls.needs_linear else 0)


def table_specs(features: Sequence[FeatureSpec], emb_cfg, dim: int) -> list[TableSpec]:
  """One table per categorical/sequence feature (features may share via `table`)."""
  opt = OptimizerSpec(
    name=emb_cfg.optimizer,
    learning_rate=emb_cfg.learning_rate,
    eps=emb_cfg.eps,
    initial_accumulator=emb_cfg.initial_accumulator,
    weight_decay=emb_cfg.weight_decay,
    clip_norm=emb_cfg.clip_norm,
  )
  sizes: dict[str, int] = {}
  for f in features:
    if f.kind != NUMERIC:
      sizes[f.table_name] = max(sizes.get(f.table_name, 0), f.vocab_size)
  return [
    TableSpec(name, vocab, dim, init_std=emb_cfg.init_std, optimizer=opt)
    for name, vocab in sizes.items()
  ]


class FeatureEncoder(nnx.Module):
  """Turns per-feature lookups and numeric values into `ModelInputs`.

  This is the trainable part of the embedding layer that is not a table
  (table-free encoders, numeric-feature encoders); its parameters train with
  the dense model. With plain tables it only packs the looked-up vectors.

  Args:
    features: The dataset's features in column order.
    needs_linear: Split the last table column off as the first-order weight.
    rngs: Initialisation randomness.
  """

  def __init__(self, features: Sequence[FeatureSpec], needs_linear: bool, *, rngs: nnx.Rngs):
    del rngs  # no parameters yet; encoders with parameters take them from here
    self.needs_linear = needs_linear
    self.pooled = tuple(
      f.name
      for f in features
      if f.kind == CATEGORICAL or (f.kind == SEQUENCE and f.pooling != "none")
    )
    self.unpooled = tuple(f.name for f in features if f.kind == SEQUENCE and f.pooling == "none")
    self.num_dense = sum(f.kind == NUMERIC for f in features)

  @property
  def num_fields(self) -> int:
    return len(self.pooled)

  def __call__(self, feats: Mapping[str, jax.Array], batch, *, train: bool = False) -> ModelInputs:
    del train
    fields = jnp.stack([feats[n] for n in self.pooled], axis=1)
    linear = None
    if self.needs_linear:
      fields, linear = fields[..., :-1], fields[..., -1]
    seqs = {}
    for n in self.unpooled:
      v = feats[n]
      seqs[n] = v[..., :-1] if self.needs_linear else v
      seqs[n + "/mask"] = feats[n + "/mask"]
    return ModelInputs(fields=fields, dense=batch["num"], linear=linear, sequences=seqs)


class CTRNetwork(nnx.Module):
  """The dense half of a CTR model: feature encoder + interaction model."""

  def __init__(self, encoder: FeatureEncoder, model: CTRModel):
    self.encoder = encoder
    self.model = model

  def __call__(self, feats, batch, *, train: bool = False, rngs: nnx.Rngs | None = None):
    return self.model(self.encoder(feats, batch, train=train), train=train, rngs=rngs)
