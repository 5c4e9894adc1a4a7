"""EmbeddingCollection: stacking, host dedup, lookup, pooling and sparse gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxctr.embeddings.collection import EmbeddingCollection, bucket_size, unique_inverse
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec, SpecError, TableSpec


def _coll(stack=True):
  feats = [
    FeatureSpec("x", "numeric"),
    FeatureSpec("a", "categorical", 10),
    FeatureSpec("b", "categorical", 7),
    FeatureSpec("s", "sequence", 10, max_len=3, pooling="mean", table="a"),
    FeatureSpec("h", "sequence", 7, max_len=2, pooling="none", table="b"),
  ]
  tables = [TableSpec("a", 10, 4, init_std=1.0), TableSpec("b", 7, 4, init_std=1.0)]
  return EmbeddingCollection(feats, tables, stack_tables=stack)


BATCH = {
  "cat": np.array([[1, 2], [1, 6], [3, 0]]),
  "s": np.array([[1, 2, -1], [-1, -1, -1], [4, 4, 5]]),
  "h": np.array([[3, -1], [0, 6], [-1, -1]]),
}


@pytest.mark.parametrize("stack", [True, False])
def test_lookup_matches_direct_indexing(stack):
  coll = _coll(stack)
  state = coll.init(jax.random.key(0))
  ids = coll.prepare(BATCH)
  out = coll.assemble(coll.gather(state, ids), ids)

  def table(name):
    for s in coll.stacks:
      for t, off in zip(s.tables, s.offsets):
        if t.name == name:
          return np.asarray(state[s.name]["table"])[off : off + t.vocab_size]

  ta, tb = table("a"), table("b")
  np.testing.assert_allclose(out["a"], ta[BATCH["cat"][:, 0]], rtol=1e-6)
  np.testing.assert_allclose(out["b"], tb[BATCH["cat"][:, 1]], rtol=1e-6)
  want_s = np.stack(
    [ta[[1, 2]].mean(0), np.zeros(4), ta[[4, 4, 5]].mean(0)]
  )  # empty sequence pools to zero
  np.testing.assert_allclose(out["s"], want_s, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(out["h/mask"], [[1, 0], [1, 1], [0, 0]])
  np.testing.assert_allclose(out["h"][1], tb[[0, 6]], rtol=1e-6)
  np.testing.assert_allclose(out["h"][0, 1], 0.0)


def test_stacking_groups_equal_tables():
  assert len(_coll(True).stacks) == 1
  assert len(_coll(False).stacks) == 2
  s = _coll(True).stacks[0]
  assert s.rows == 17 and s.offsets == (0, 10) and s.width == 1 + 1 + 3 + 2


def test_prepare_dedups_and_pads_out_of_range():
  coll = _coll()
  ids = coll.prepare(BATCH)[coll.stacks[0].name]
  uniq, inv = ids["uniq"], ids["inv"]
  rows = coll.stacks[0].rows
  real = uniq[uniq < rows]
  assert len(real) == len(set(real.tolist()))  # unique
  assert np.all(np.diff(uniq) > 0)  # sorted, padding distinct
  assert len(uniq) % 8 == 0 and len(uniq) > len(real)
  # Every position maps back to its (offset) id, padding to an out-of-range slot.
  assert uniq[inv[0, 0]] == 1 and uniq[inv[1, 1]] == 10 + 6
  assert uniq[inv[1, 2]] >= rows  # padded sequence position


def test_sparse_gradient_is_per_row_sum():
  coll = _coll()
  state = coll.init(jax.random.key(1))
  ids = coll.prepare(BATCH)
  name = coll.stacks[0].name
  g = jax.grad(lambda r: coll.assemble(r, ids)["a"].sum())(coll.gather(state, ids))[name]
  uniq = ids[name]["uniq"]
  # Feature "a" uses id 1 twice and id 3 once.
  np.testing.assert_allclose(g[np.flatnonzero(uniq == 1)[0]], 2.0)
  np.testing.assert_allclose(g[np.flatnonzero(uniq == 3)[0]], 1.0)
  assert float(jnp.abs(g).sum()) == pytest.approx(3 * 4)


def test_update_writes_only_touched_rows_and_padding_is_dropped():
  coll = _coll()
  state = coll.init(jax.random.key(2))
  name = coll.stacks[0].name
  before = np.asarray(state[name]["table"]).copy()
  ids = coll.prepare(BATCH)
  grads = {name: jnp.ones((len(ids[name]["uniq"]), 4))}
  after = np.asarray(coll.apply_gradients(state, ids, grads, jnp.int32(1))[name]["table"])
  touched = {int(u) for u in ids[name]["uniq"] if u < coll.stacks[0].rows}
  changed = set(np.flatnonzero(np.any(after != before, axis=1)).tolist())
  assert changed == touched


def test_out_of_range_id_is_reported_with_feature_name():
  coll = _coll()
  with pytest.raises(ValueError, match="feature 'b'.*7"):
    coll.prepare(dict(BATCH, cat=np.array([[1, 7], [1, 6], [3, 0]])))


def test_invalid_specs_name_the_feature():
  with pytest.raises(SpecError, match="feature 'a'.*table 'zz'"):
    EmbeddingCollection([FeatureSpec("a", "categorical", 5, table="zz")], [TableSpec("a", 5, 4)])
  with pytest.raises(SpecError, match="feature 'a' has vocab_size 9"):
    EmbeddingCollection([FeatureSpec("a", "categorical", 9)], [TableSpec("a", 5, 4)])
  with pytest.raises(SpecError, match="table 't'.*dim"):
    TableSpec("t", 5, 0)
  with pytest.raises(SpecError, match="feature 'q'.*kind"):
    FeatureSpec("q", "categoricall", 5)


def test_bucket_size_bounds():
  assert bucket_size(1, 1000) == 128
  assert bucket_size(129, 1000) == 256
  assert bucket_size(999, 1000) == 1008  # capped near total + 1
  for n in range(1, 2000, 37):
    assert bucket_size(n, 2000) >= n


def test_table_dtype_and_slots():
  opt = OptimizerSpec("rowwise_adagrad", initial_accumulator=0.5)
  coll = EmbeddingCollection(
    [FeatureSpec("a", "categorical", 5)], [TableSpec("a", 5, 3, optimizer=opt)]
  )
  st = coll.init(jax.random.key(0))["a"]
  assert st["accumulator"].shape == (5, 1) and float(st["accumulator"][0, 0]) == 0.5
  assert coll.num_bytes() == 5 * 3 * 4 + 5 * 4


@pytest.mark.parametrize(
  "shape,high", [((4096, 26), 26_000_000), ((7, 3), 4), ((1, 1), 0), ((300,), 2**50)]
)
def test_unique_inverse_equals_numpy(shape, high):
  ids = np.random.default_rng(0).integers(0, high + 1, shape)
  uniq, inv = unique_inverse(ids)
  want_u, want_i = np.unique(ids, return_inverse=True)
  np.testing.assert_array_equal(uniq, want_u)
  np.testing.assert_array_equal(inv, want_i.reshape(shape))
  assert inv.dtype == np.int32 and inv.shape == shape
  np.testing.assert_array_equal(uniq[inv], ids)
