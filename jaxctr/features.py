"""From a dataset's features and the config to tables and model inputs.

This is the glue between the embedding layer (ids -> vectors) and the model
zoo (vectors -> logits): it declares one `TableSpec` per categorical feature,
and packs everything into `ModelInputs`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import NUMERIC, FeatureSpec, OptimizerSpec, TableSpec
from jaxctr.models.base import ModelInputs

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


class InputBuilder:
  """Packs looked-up embeddings and numeric values into `ModelInputs`.

  Args:
    collection: The embedding collection serving the categorical features.
    needs_linear: Split the last table column off as the first-order weight.
  """

  def __init__(self, collection: EmbeddingCollection, needs_linear: bool):
    self.collection = collection
    self.needs_linear = needs_linear
    self.pooled = [
      f.name for f in collection.features if f.pooling != "none" or f.kind != "sequence"
    ]
    self.unpooled = [
      f.name for f in collection.features if f.kind == "sequence" and f.pooling == "none"
    ]

  @property
  def num_fields(self) -> int:
    return len(self.pooled)

  def __call__(self, rows: Mapping[str, jax.Array], ids, batch) -> ModelInputs:
    feats = self.collection.assemble(rows, ids)
    fields = jnp.stack([feats[n] for n in self.pooled], axis=1)
    linear = None
    if self.needs_linear:
      fields, linear = fields[..., :-1], fields[..., -1]
    seqs = {}
    for n in self.unpooled:
      v = feats[n]
      seqs[n] = v[..., :-1] if self.needs_linear else v
      seqs[n + "/mask"] = feats[n + "/mask"]
    return ModelInputs(
      fields=fields, dense=batch["num"], linear=linear, sequences=seqs
    )
