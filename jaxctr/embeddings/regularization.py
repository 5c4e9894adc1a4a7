"""L2 penalty on embedding tables, sparse (touched rows) or dense (whole tables, FuxiCTR).

The penalty is FuxiCTR's ``embedding_regularizer``: ``(l2 / 2) * ||W||^2`` summed over every
table ``W``, added to the (batch-mean) loss, so its gradient is ``l2 * w`` per row and the
BARS regulariser values (e.g. 0.05 on Frappe) carry over unchanged.

Modes:

* ``sparse`` (default): ``l2 * w`` is added to the gradient of the rows the batch touches
  only. A step costs O(unique ids), like the rest of the sparse update; rows not in the batch
  are not decayed. (For SGD/Adagrad this is what ``embedding.weight_decay`` does too.)
* ``dense``: as FuxiCTR (a PyTorch ``nn.Embedding`` with a dense optimizer): every row of
  every table gets ``l2 * w`` each step, plus its data gradient if the batch touches it, and
  every row is updated by the table's optimizer (with Adam the moments of untouched rows
  decay and they keep moving). A step then costs O(table rows): fine for Frappe/MovieLens
  sized tables, expensive for Criteo/Avazu sized ones (FuxiCTR pays the same).

Under Adam the two modes differ more than their cost: in dense mode a row the batch does not
touch has gradient ``l2 * w`` alone, which Adam divides by the root of the row's (decayed)
second moment, so the row steps about one learning rate toward zero per step whatever ``l2``
is. On the synthetic BARS test (experiments/README.md) dense mode with BARS' own LR/FM values
left them 0.003/0.010 AUC below convergence; sparse mode reached it. FuxiCTR behaves as
dense mode; experiments/bars.py uses sparse.

Both modes go through `EmbeddingCollection.apply_gradients`, so they work with stacked tables,
low-precision storage and every sparse optimizer.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxctr.embeddings.collection import EmbeddingCollection

Array = jax.Array
MODES = ("sparse", "dense")


def check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"config.embedding.l2_mode: unknown {mode!r}; expected one of {MODES}")


def add_l2(
  collection: EmbeddingCollection,
  emb_state,
  ids,
  rows: Mapping[str, Array],
  row_grads: Mapping[str, Array],
  l2: float,
  mode: str = "sparse",
):
  """Adds the gradient of ``(l2 / 2) * ||W||^2`` to the embedding gradients.

  Args:
    collection: The tables' collection.
    emb_state: Its state (``{stack: {"table": ..., slots...}}``).
    ids: The batch's ids from `EmbeddingCollection.prepare`.
    rows: The gathered (dequantized) rows of the batch, ``collection.gather(emb_state, ids)``.
    row_grads: Loss gradient per gathered row, ``{stack: [U, D]}``.
    l2: Penalty coefficient (FuxiCTR's ``embedding_regularizer``); 0 returns the inputs.
    mode: ``sparse`` (touched rows only) or ``dense`` (every row).

  Returns:
    ``(ids, row_grads)`` to pass to `EmbeddingCollection.apply_gradients`. In dense mode the
    ids select every row of every stack and the gradients are [rows, D] per stack.
  """
  check_mode(mode)
  if not l2:
    return ids, row_grads
  if mode == "sparse":
    # Padding slots read zero rows, so they get a zero penalty (and are dropped anyway).
    return ids, {k: g + l2 * rows[k].astype(g.dtype) for k, g in row_grads.items()}
  full_ids = dict(ids)
  grads = {}
  for s in collection.stacks:
    uniq = ids[s.name]["uniq"]
    full_ids[s.name] = dict(ids[s.name], uniq=jnp.arange(s.rows, dtype=uniq.dtype))
  w_all = collection.gather(emb_state, full_ids)
  for s in collection.stacks:
    g = row_grads[s.name]
    dense = jnp.zeros((s.rows, g.shape[-1]), g.dtype)
    dense = dense.at[ids[s.name]["uniq"]].add(
      g, mode="drop", indices_are_sorted=True, unique_indices=True
    )  # padding ids are out of range: dropped
    grads[s.name] = dense + l2 * w_all[s.name].astype(g.dtype)
  return full_ids, grads
