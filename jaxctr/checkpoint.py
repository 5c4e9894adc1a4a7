"""Orbax checkpoints of the whole training state (no pickle anywhere).

The training state is an arbitrary pytree (nnx States, optax states, table
dicts). It is saved as a flat dict of arrays keyed ``a00000, a00001, ...`` in
tree order, with the readable tree paths stored in JSON metadata. On restore
the paths are checked against the freshly built state, so a checkpoint from a
different model or config fails with a message naming the first mismatch
instead of loading garbage. Checkpoints of the earlier dict training state
(paths ``['emb'][...]``) restore into the typed state (``.emb[...]``) by path.

Host (numpy) arrays are written without orbax's defensive deep copy: the only ones in a
jaxctr state are offloaded tables' snapshots (`HostStore.snapshot`), already private
copies, and a second copy would double the memory a save of a large table takes (or,
for a memory-mapped snapshot, put the whole table in memory).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from absl import logging


def _flatten(tree) -> tuple[dict[str, Any], list[str], Any]:
  leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
  arrays = {f"a{i:05d}": leaf for i, (_, leaf) in enumerate(leaves_with_path)}
  paths = [jax.tree_util.keystr(p) for p, _ in leaves_with_path]
  return arrays, paths, treedef


class CheckpointError(RuntimeError):
  """A checkpoint cannot be restored into the current training state."""


# The training state was a dict before it became `state.TrainState`: its leaves were
# ``['emb'][...]`` where they are now ``.emb[...]`` (and in another order).
_LEGACY_FIELD = re.compile(r"^\['(step|params|rest|opt_state|emb|lr_factor)'\]")


def _canonical(path: str) -> str:
  return _LEGACY_FIELD.sub(r".\1", path)


def _saved_index(saved: list[str], paths: list[str], where: str) -> list[int]:
  """For each template path, the index of the saved array holding it."""
  if saved == paths:
    return list(range(len(paths)))
  by_path = {_canonical(p): i for i, p in enumerate(saved)}
  missing = [p for p in paths if p not in by_path]
  extra = sorted(set(by_path) - set(paths))
  if missing or extra or len(by_path) != len(saved):
    diff = (
      f"{missing[0]!r} is not in it"
      if missing
      else f"it holds {extra[0]!r}, which the current state has not"
      if extra
      else "it repeats a path"
    )
    raise CheckpointError(f"checkpoint {where} does not match the current model/config: {diff}")
  return [by_path[p] for p in paths]


_HOST_HANDLER = None


def _write_host_arrays_in_place(ocp) -> None:
  """Registers orbax's numpy handler without its deep copy (once per process)."""
  global _HOST_HANDLER
  if _HOST_HANDLER is None:
    _HOST_HANDLER = ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False)
    ocp.type_handlers.register_type_handler(np.ndarray, _HOST_HANDLER, override=True)


class Checkpointer:
  """Saves and restores (state, meta) under ``directory`` with a CheckpointManager.

  Args:
    directory: Checkpoint root (created if needed).
    max_to_keep: Number of most recent checkpoints kept.
    async_save: Write in a background thread after the arrays are copied.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2, async_save: bool = True):
    # Imported here: orbax (with tensorstore) adds ~25 MB to a process that never checkpoints.
    import orbax.checkpoint as ocp

    self._args = ocp.args
    _write_host_arrays_in_place(ocp)
    self.directory = os.path.abspath(os.path.expanduser(directory))
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True
    )
    self._mgr = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, step: int, state, meta: dict[str, Any]) -> None:
    arrays, paths, _ = _flatten(state)
    meta = dict(meta, tree_paths=paths)
    self._mgr.save(
      step,
      args=self._args.Composite(
        state=self._args.StandardSave(arrays), meta=self._args.JsonSave(meta)
      ),
    )

  def restore(self, state_template, step: int | None = None):
    """Restores into the structure (and shardings) of ``state_template``.

    Returns:
      (state, meta) of the requested (default: latest) step.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    arrays, paths, treedef = _flatten(state_template)
    meta = self.read_meta(step)
    index = _saved_index(meta.get("tree_paths", []), paths, f"{self.directory}/{step}")
    abstract = {
      f"a{i:05d}": jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=getattr(v, "sharding", None))
      for i, v in zip(index, arrays.values(), strict=True)
    }
    restored = self._mgr.restore(
      step, args=self._args.Composite(state=self._args.StandardRestore(abstract))
    )["state"]
    leaves = [restored[f"a{i:05d}"] for i in index]
    logging.info("Restored checkpoint %s/%d", self.directory, step)
    return jax.tree_util.tree_unflatten(treedef, leaves), meta

  def read_meta(self, step: int | None = None) -> dict[str, Any]:
    """The JSON metadata saved with a checkpoint (default: the latest)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    return self._mgr.restore(step, args=self._args.Composite(meta=self._args.JsonRestore()))["meta"]

  def restore_leaves(self, step: int | None = None) -> dict[str, np.ndarray]:
    """All saved arrays keyed by their tree path, without a template.

    For partial restores, e.g. initialising one model's tables from another
    model's checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    meta = self.read_meta(step)
    arrays = self._mgr.restore(step, args=self._args.Composite(state=self._args.StandardRestore()))[
      "state"
    ]
    paths = meta.get("tree_paths", [])
    return {_canonical(p): np.asarray(arrays[f"a{i:05d}"]) for i, p in enumerate(paths)}

  def wait(self) -> None:
    self._mgr.wait_until_finished()

  def close(self) -> None:
    self._mgr.wait_until_finished()
    self._mgr.close()
