"""The pure train step on mock data, and reading table rows through every backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxctr import features as features_lib
from jaxctr import models, parallel, steps
from jaxctr.embeddings import backends
from jaxctr.embeddings.collection import EmbeddingCollection
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, TableSpec
from jaxctr.state import TrainState

FEATS = [FeatureSpec("a", "categorical", 50), FeatureSpec("b", "categorical", 30)]


def _tables(groups=None, n=1):
  opt = OptimizerSpec("adam_lazy", learning_rate=0.05)
  specs = [TableSpec(f.name, f.vocab_size, 4, init_std=0.1, optimizer=opt) for f in FEATS]
  coll = EmbeddingCollection(FEATS, specs, stack_tables=False, groups=groups)
  mesh = parallel.make_mesh(parallel.load_recipe("data_parallel"), jax.devices()[:n])
  key = jax.random.key(3)
  return backends.build(coll, mesh, ("data",), key=key, offload=backends.OffloadSettings(0.5)), key


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_train_step_on_mock_data_learns_and_keeps_the_state_typed(dtype):
  tables, key = _tables()
  enc = features_lib.FeatureEncoder(FEATS, False, rngs=nnx.Rngs(0), collection=tables.collection)
  model = models.build("deepfm", {"hidden": (8,)}, num_fields=2, embed_dim=4, num_dense=0)
  graphdef, params, rest = nnx.split(features_lib.CTRNetwork(enc, model), nnx.Param, ...)
  tx = steps.make_optimizer(type("O", (), dict(name="adam", learning_rate=0.05, grad_clip_norm=0)))
  fns = steps.StepFns(
    graphdef, tx, tables, steps.make_schedule("constant", 10), seed=0, compute_dtype=dtype
  )
  train, _ = steps.jit_steps(fns)
  put = lambda tree: jax.tree.map(lambda x: parallel.put_global(x, tables.mesh), tree)
  state = TrainState(
    *put((jnp.zeros((), jnp.int32), params, rest, tx.init(params))),
    emb=tables.init(key),
    lr_factor=put(jnp.float32(1)),
  )
  rng = np.random.default_rng(0)
  cat = np.stack([rng.integers(0, 50, 64), rng.integers(0, 30, 64)], 1)
  host = {"cat": cat, "num": np.zeros((64, 0), np.float32), "label": (cat[:, 0] < 10) * 1.0}
  batch = {"label": jnp.asarray(host["label"], jnp.float32), "num": jnp.asarray(host["num"])}
  losses = []
  for _ in range(5):
    state, out = train(state, batch, tables.prepare(host))
    losses.append(float(out["loss"]))
  assert isinstance(state, TrainState) and int(state.step) == 5
  assert losses[-1] < losses[0]
  assert train._cache_size() == 1  # traced once, state donated and returned in kind
  # Parameters and optimizer state stay float32 whatever the compute dtype.
  assert {x.dtype for x in jax.tree.leaves((state.params, state.opt_state))} <= {
    jnp.dtype("float32"),
    jnp.dtype("int32"),
  }


@pytest.mark.parametrize(
  "groups,n", [(None, 1), ({"a": "row_wise", "b": "column_wise"}, 8), ({"a": "offload"}, 1)]
)
def test_read_rows_is_the_same_wherever_the_table_lives(groups, n):
  ref_tables, key = _tables()
  ref = np.asarray(ref_tables.init(key)["a"]["table"])
  tables, key = _tables(groups, n)
  emb = tables.init(key)
  np.testing.assert_array_equal(tables.read_rows(emb, "a", 7, 31), ref[7:31])
  np.testing.assert_array_equal(tables.read_rows(emb, "a", 0, 50), ref)
  with pytest.raises(ValueError, match="no table 'zz'"):
    tables.read_rows(emb, "zz", 0, 1)
