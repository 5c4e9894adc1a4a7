"""Which models admit the partials exchange, and how they split into owner sums.

A model admits partial sums when the embeddings enter it only through sums over
fields (see `jaxctr.embeddings.partials`). Each declaration here gives:

- ``by_field(model, x)``: the owner's part for row-based tables, ``x`` [B, F, D]
  holding the fields whose row this device owns (zeros elsewhere). Only
  quantities additive over fields may appear; squares wait for the combine.
- ``by_column(model, x, cols, dim)``: the same for column_wise tables, ``x`` being
  every field's slice of columns ``cols``; the owner finishes what is additive
  over columns (FM's and FwFM's pair terms) and sends one scalar per sample.
- ``finish(model, parts, dense, train, rngs)``: logits [B] from the summed parts.
- ``width(F, k, hidden)``: partial values per sample (row-based), for the byte estimate.
- ``by_id(model, vecs)`` (optional): per-id terms when the model does not care which
  field an id belongs to (LR, FM); row-based owners then sum them per sample directly.

Declared: LR (W = 1), FM (W = k + 1), FwFM (W = F k + 1: its field-pair weights
couple every pair, so the part is each field's vector in its own slot),
DNN (W = first hidden width) and DeepFM (W = k + 1 + hidden).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
from flax import nnx

from jaxctr.embeddings import partials
from jaxctr.models import base, layers


@dataclasses.dataclass(frozen=True)
class Terms:
  by_field: Callable
  by_column: Callable
  finish: Callable
  width: Callable[[int, int, int], int]
  by_id: Callable | None = None  # (model, vecs [M, D]) -> per-id terms, when field-agnostic


def _linear(model, dense):
  b = dense.shape[0]
  return model.linear(base.ModelInputs(fields=jnp.zeros((b, 0, 0), dense.dtype), dense=dense))


def _split(x):
  return x[..., :-1], x[..., -1]


def _col_masks(x, cols, dim, linear):
  """(embedding part, linear-weight part) of a column slice; padding columns drop out."""
  k = dim - int(linear)
  v = x * (cols < k).astype(x.dtype)
  w = (x * (cols == k).astype(x.dtype)).sum(axis=-1) if linear else None
  return v, w


# ---------------------------------------------------------------------------- LR / FM
def _lr_field(model, x):
  return {"s": x[..., -1].sum(axis=1)}


def _lr_id(model, v):
  return {"s": v[:, -1]}


def _lr_col(model, x, cols, dim):
  return {"s": _col_masks(x, cols, dim, True)[1].sum(axis=1)}


def _lr_finish(model, parts, dense, train, rngs):
  return _linear(model, dense) + parts["s"]


def _fm_field(model, x):
  v, w = _split(x)
  return {"s": w.sum(axis=1) - 0.5 * jnp.sum(v * v, axis=(1, 2)), "v": v.sum(axis=1)}


def _fm_id(model, x):
  v, w = _split(x)
  return {"s": w - 0.5 * jnp.sum(v * v, axis=-1), "v": v}


def _fm_col(model, x, cols, dim):
  v, w = _col_masks(x, cols, dim, True)
  return {"s": w.sum(axis=1) + layers.fm_interaction(v)}


def _fm_logit(parts):
  out = parts["s"]
  if "v" in parts:  # row-based: the square of the combined sum
    out = out + 0.5 * jnp.sum(parts["v"] * parts["v"], axis=-1)
  return out


def _fm_finish(model, parts, dense, train, rngs):
  return _linear(model, dense) + _fm_logit(parts)


# ------------------------------------------------------------------------------- FwFM
def _fwfm_field(model, x):
  v, w = _split(x)
  return {"s": w.sum(axis=1), "f": v}


def _fwfm_col(model, x, cols, dim):
  v, w = _col_masks(x, cols, dim, True)
  return {"s": w.sum(axis=1) + layers.pairwise_products(v) @ model.pair_weight[...]}


def _fwfm_finish(model, parts, dense, train, rngs):
  out = _linear(model, dense) + parts["s"]
  if "f" in parts:
    out = out + layers.pairwise_products(parts["f"]) @ model.pair_weight[...]
  return out


# ------------------------------------------------------------------- first dense layer
def _first_layer(mlp, v, cols=None, k=0):
  """The owner's ``sum_f e_f @ W1[f]`` ([B, H]); ``cols``: its column slice (column_wise)."""
  kernel = mlp.layers[0].kernel[...]
  b, f, d = v.shape
  if cols is None:
    return v.reshape(b, f * d) @ kernel[: f * d]
  w = kernel[: f * k].reshape(f, k, -1)[:, jnp.clip(cols, 0, k - 1)]  # [F, Dl, H]
  return jnp.einsum("bfc,fch->bh", v, w * (cols < k)[None, :, None])


def _deep_finish(mlp, h, dense, train, rngs):
  layer = mlp.layers[0]
  n_dense = dense.shape[1]
  kernel = layer.kernel[...]
  if n_dense:
    h = h + dense @ kernel[kernel.shape[0] - n_dense :]
  if layer.bias is not None:
    h = h + layer.bias[...]
  return mlp.tail(h, start=1, train=train, rngs=rngs)[:, 0]


def _dnn_field(model, x):
  return {"h": _first_layer(model.dnn, x)}


def _dnn_col(model, x, cols, dim):
  return {"h": _first_layer(model.dnn, x, cols, dim)}


def _dnn_finish(model, parts, dense, train, rngs):
  return _deep_finish(model.dnn, parts["h"], dense, train, rngs)


def _deepfm_field(model, x):
  return dict(_fm_field(model, x), h=_first_layer(model.dnn, x[..., :-1]))


def _deepfm_col(model, x, cols, dim):
  return dict(_fm_col(model, x, cols, dim), h=_first_layer(model.dnn, x, cols, dim - 1))


def _deepfm_finish(model, parts, dense, train, rngs):
  deep = _deep_finish(model.dnn, parts["h"], dense, train, rngs)
  return _linear(model, dense) + _fm_logit(parts) + deep


TERMS: dict[str, Terms] = {
  "lr": Terms(_lr_field, _lr_col, _lr_finish, lambda f, k, h: 1, _lr_id),
  "fm": Terms(_fm_field, _fm_col, _fm_finish, lambda f, k, h: k + 1, _fm_id),
  "fwfm": Terms(_fwfm_field, _fwfm_col, _fwfm_finish, lambda f, k, h: f * k + 1),
  "dnn": Terms(_dnn_field, _dnn_col, _dnn_finish, lambda f, k, h: h),
  "deepfm": Terms(_deepfm_field, _deepfm_col, _deepfm_finish, lambda f, k, h: k + 1 + h),
}


def admits(model_name: str) -> bool:
  """Whether a registered model declares partial sums."""
  return model_name in TERMS


def width(model_name: str, fields: int, dim: int, hidden: int = 0) -> int:
  """Partial values per sample of a model on row-based tables (``dim`` without the linear column)."""
  return TERMS[model_name].width(fields, dim, hidden)


def logits(model: base.CTRModel, coll, rows, ids, dense, *, train=False, rngs=None):
  """The model's logits [B] on the partials exchange of ``coll``'s sharded stacks.

  Args:
    model: A model with a declaration here.
    coll: The sharded collection (`partials.enable` applied).
    rows: ``coll.gather(state, ids)``.
    ids: `partials.prepare` output, placed with `partials.put_ids`.
    dense: [B, N] raw numeric features, split with the batch.
  """
  name = getattr(model, "registry_name", type(model).__name__.lower())
  if name not in TERMS:
    raise ValueError(
      f"config.embedding.exchange='partials': model {name!r} declares no partial sums; "
      f"models that do: {sorted(TERMS)}"
    )
  terms = TERMS[name]
  graphdef, state = nnx.split(model)
  first = next(iter(coll.layouts.values()))

  def owner(state, x, cols):
    m = nnx.merge(graphdef, state)
    return terms.by_field(m, x) if first.row_based else terms.by_column(m, x, cols, first.dim)

  by_id = None
  if terms.by_id is not None:

    def by_id(state, vecs):
      return terms.by_id(nnx.merge(graphdef, state), vecs)

  parts = partials.partial_sums(coll, rows, ids, owner, state, dense.shape[0], by_id)
  return terms.finish(model, parts, dense, train, rngs)
