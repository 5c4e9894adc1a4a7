"""The training state: one typed pytree that the jitted step donates and returns."""

from __future__ import annotations

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
  """Everything a step reads and writes; checkpointed whole.

  Attributes:
    step: Steps taken (int32 scalar).
    params: Dense parameters (``nnx.Param`` state of the network).
    rest: The network's other variables (batch-norm statistics, RNG counters, ...).
    opt_state: The dense optimizer's state (optax).
    emb: Stored arrays of every embedding stack ``{stack: {"table": ..., slot: ...}}``,
      in each stack's backend layout (see `jaxctr.embeddings.backends`).
    lr_factor: Reduce-on-plateau factor (float32 scalar): a traced leaf, so a new value
      does not recompile the step, and it checkpoints with the rest.
  """

  step: jax.Array
  params: Any
  rest: Any
  opt_state: Any
  emb: Any
  lr_factor: jax.Array

  def __getitem__(self, key: str):
    """Read access by field name (``state["emb"]``), as for the former dict state."""
    return getattr(self, key)
