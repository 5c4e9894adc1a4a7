"""A save killed midway leaves a temporary folder: it is ignored, and the step saved again."""

import os

import jax.numpy as jnp
import numpy as np

from jaxctr import checkpoint


def test_unfinished_step_folder_is_ignored_and_overwritten(tmp_path):
  d = str(tmp_path / "ckpt")
  state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(2)}
  c = checkpoint.Checkpointer(d, async_save=True)
  c.save(2, state, {"step": 2})
  c.close()
  # What kill -9 during an async save of step 4 leaves: orbax's temporary folder, half full.
  tmp = os.path.join(d, "4.orbax-checkpoint-tmp")
  os.makedirs(os.path.join(tmp, "state.orbax-checkpoint-tmp"))
  with open(os.path.join(tmp, "state.orbax-checkpoint-tmp", "manifest.ocdbt"), "wb") as fh:
    fh.write(b"\x00garbage")
  c = checkpoint.Checkpointer(d, async_save=True)
  assert c.latest_step() == 2  # the unfinished step does not count
  restored, meta = c.restore(state)
  np.testing.assert_array_equal(restored["w"], state["w"])
  c.save(4, dict(state, w=state["w"] + 1), {"step": 4})  # the resumed run saves step 4 again
  c.close()
  c = checkpoint.Checkpointer(d, async_save=False)
  assert c.latest_step() == 4 and c.read_meta()["step"] == 4
  np.testing.assert_array_equal(c.restore(state)[0]["w"], state["w"] + 1)
  assert not os.path.exists(tmp)
