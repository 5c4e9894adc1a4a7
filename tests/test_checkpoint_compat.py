"""Checkpoints of the earlier dict training state restore into the typed `TrainState`."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from jaxctr import checkpoint
from jaxctr.state import TrainState


def _state(offset=0.0):
  return TrainState(
    step=jnp.asarray(3, jnp.int32),
    params={"mlp": {"w": jnp.arange(6.0).reshape(2, 3) + offset}},
    rest={"bn": {"mean": jnp.ones(3) + offset}},
    opt_state=({"mu": jnp.full(4, 2.0) + offset},),
    emb={"stack0": {"table": jnp.arange(10.0).reshape(5, 2) + offset, "m": jnp.zeros((5, 2))}},
    lr_factor=jnp.asarray(0.5, jnp.float32),
  )


def test_dict_state_checkpoint_restores_into_typed_state(tmp_path):
  saved = _state(offset=7.0)
  # What the trainer saved before the typed state: a dict of the same fields, whose leaves
  # flatten in key order (emb, lr_factor, opt_state, ...) under paths ['emb'][...].
  legacy = {f.name: getattr(saved, f.name) for f in dataclasses.fields(saved)}
  c = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  c.save(3, legacy, {"step": 3})
  assert c.read_meta()["tree_paths"][0].startswith("['emb']")
  restored, meta = c.restore(_state())
  assert meta["step"] == 3
  np.testing.assert_array_equal(restored.emb["stack0"]["table"], saved.emb["stack0"]["table"])
  np.testing.assert_array_equal(restored.params["mlp"]["w"], saved.params["mlp"]["w"])
  np.testing.assert_array_equal(restored.opt_state[0]["mu"], saved.opt_state[0]["mu"])
  assert float(restored.lr_factor) == 0.5 and int(restored.step) == 3
  assert "['emb']" not in "".join(c.restore_leaves())  # partial restores see the new paths
  c.close()


def test_mismatched_checkpoint_names_the_missing_path(tmp_path):
  c = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  c.save(1, _state(), {"step": 1})
  other = _state().replace(params={"mlp": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}})
  with pytest.raises(checkpoint.CheckpointError, match=r"\.params\['mlp'\]\['b'\]. is not in it"):
    c.restore(other)
  c.close()
