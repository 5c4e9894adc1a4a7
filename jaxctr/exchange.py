"""The embedding exchange of a training run: ``config.embedding.exchange`` = rows|partials|auto.

``rows`` moves the deduplicated rows to the devices that run the model
(`embeddings.sharded`); ``partials`` moves per-sample partial sums computed on
the rows' owners (`embeddings.partials`, `models.partial_terms`); ``auto``
takes partials when the run admits them and `partials.bytes_per_step` says
they move fewer bytes. The trainer calls `choose` once, then `prepare`,
`put_ids` and `logits` in place of the collection's own calls.
"""

from __future__ import annotations

import dataclasses

from absl import logging

from jaxctr.embeddings import partials
from jaxctr.models import partial_terms


@dataclasses.dataclass(frozen=True)
class Exchange:
  mode: str  # "rows" or "partials"
  bytes_per_step: dict[str, int]  # estimates of both modes ({} when not sharded)


def _obstacle(config, collection, encoder, model, offload, crosses) -> str:
  """Why this run cannot use partials ("" when it can)."""
  name = getattr(model, "registry_name", config.model)
  if not partial_terms.admits(name):
    return (
      f"model {name!r} declares no partial sums (models that do: {sorted(partial_terms.TERMS)})"
    )
  if offload is not None:
    return "the host-offload cache (config.offload) needs the rows exchange"
  if crosses:
    return "Wide & Deep cross features need the rows exchange"
  if len(encoder.numeric):
    return "numeric encoders (config.numeric.encoder != 'raw') need the rows exchange"
  try:
    partials.check(collection)
  except ValueError as e:
    return str(e).removeprefix("config.embedding.exchange='partials': ")
  return ""


def choose(config, collection, encoder, model, *, offload=None, crosses=None) -> Exchange:
  """The run's exchange; enables partial routing on ``collection`` when it is chosen.

  Raises:
    ValueError: ``exchange='partials'`` on a run that cannot use it, or an unknown mode.
  """
  mode = config.embedding.exchange
  if mode not in partials.EXCHANGES:
    raise ValueError(f"config.embedding.exchange: {mode!r} not in {partials.EXCHANGES}")
  if mode == "rows" or not collection.layouts:
    if mode == "partials":
      raise ValueError("config.embedding.exchange='partials' needs sharded tables (a strategy)")
    return Exchange("rows", {})
  why = _obstacle(config, collection, encoder, model, offload, crosses)
  if why and mode == "partials":
    raise ValueError(f"config.embedding.exchange='partials': {why}")
  name = getattr(model, "registry_name", config.model)
  costs = {}
  if not why:
    hidden = model.dnn.layers[0].out_features if hasattr(model, "dnn") else 0
    fields = len(partials.field_order(collection))
    costs = partials.bytes_per_step(
      config.batch_size,
      fields,
      config.embed_dim,
      collection.placement.size,
      partial_terms.width(name, fields, config.embed_dim, hidden),
      linear=model.needs_linear,
    )
  chosen = partials.choose(mode, not why, costs)
  logging.info(
    "embedding exchange: %s (requested %s; estimated bytes/step %s%s)",
    chosen,
    mode,
    costs,
    f"; partials not possible: {why}" if why else "",
  )
  if chosen == "partials":
    partials.enable(collection)
  return Exchange(chosen, costs)


def prepare(ex: Exchange, collection, batch):
  """Host-side ids of a batch for the chosen exchange."""
  return partials.prepare(collection, batch) if ex.mode == "partials" else collection.prepare(batch)


def put_ids(ex: Exchange, collection, ids, mesh):
  if ex.mode == "partials":
    return partials.put_ids(collection, ids, mesh)
  return collection.put_ids(ids, mesh)


def logits(ex: Exchange, net, collection, rows, ids, batch, *, train, rngs=None, replicated=None):
  """The network's logits from gathered rows, through the chosen exchange."""
  if ex.mode == "partials":
    dense = batch["num"]
    return partial_terms.logits(net.model, collection, rows, ids, dense, train=train, rngs=rngs)
  feats = collection.assemble(rows, ids, replicated or frozenset())
  return net(feats, batch, train=train, rngs=rngs)
