"""BARS-protocol training options: reduce-on-plateau and the embedding L2 penalty."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxctr import early_stopping, train
from tests.conftest import tiny_config


def _config(data_dir, **kw):
  kw = {"embed_dim": 4, "checkpoint.async_save": False, **kw}
  return tiny_config(data_dir, "fm", **kw)


def _evals(workdir):
  lines = [json.loads(x) for x in open(f"{workdir}/metrics.jsonl")]
  return [x for x in lines if "lr_factor" in x]


def _plateau_config(data_dir):
  # Learning rates of 0 freeze the model, so every evaluation after the first is a plateau.
  return _config(
    data_dir,
    **{
      "embedding.learning_rate": 0.0,
      "optimizer.learning_rate": 0.0,
      "lr_plateau.factor": 0.1,
      "lr_plateau.patience": 1,
    },
  )


def test_plateau_reduces_factor_and_resume_keeps_it(data_dir, tmp_path):
  full = train.train_and_evaluate(_plateau_config(data_dir), str(tmp_path / "full"))
  assert [e["lr_factor"] for e in _evals(tmp_path / "full")] == pytest.approx([1.0, 0.1, 0.01])
  assert float(full["final_state"]["lr_factor"]) == pytest.approx(0.01)

  wd = tmp_path / "resumed"
  part = train.train_and_evaluate(_plateau_config(data_dir), str(wd), stop_at_step=17)
  assert part["preempted"]
  ck = train.ckpt_lib.Checkpointer(str(wd / "checkpoints"), async_save=False)
  state17, meta = ck.restore(train.Trainer(_plateau_config(data_dir)).init_state())
  assert int(state17["step"]) == 17 and meta["bad_evals"] == 1
  assert float(state17["lr_factor"]) == pytest.approx(0.1)
  resumed = train.train_and_evaluate(_plateau_config(data_dir), str(wd))
  assert float(resumed["final_state"]["lr_factor"]) == pytest.approx(0.01)


def test_plateau_patience_and_floor(data_dir, tmp_path):
  c = _plateau_config(data_dir)
  c.total_steps = 40  # 5 evaluations, 4 of them without improvement
  c.lr_plateau.patience = 2
  train.train_and_evaluate(c, str(tmp_path / "p2"))
  assert [e["lr_factor"] for e in _evals(tmp_path / "p2")] == pytest.approx(
    [1.0, 1.0, 0.1, 0.1, 0.01]
  )
  c = _plateau_config(data_dir)
  c.optimizer.learning_rate = 1e-3  # zero sparse rate still freezes the tables ...
  c.optimizer.name = "sgd"
  c.lr_plateau.min_lr = 5e-5  # ... floor: factor >= 0.05
  stopper = early_stopping.EarlyStopping("valid_auc", "max", 0, best=1.0, bad_evals=1)
  factor = 1.0
  for expected in (0.1, 0.05, 0.05):
    factor = early_stopping.plateau_factor(factor, stopper, c)
    assert factor == pytest.approx(expected)
  with pytest.raises(ValueError, match="config.lr_plateau"):
    train.train_and_evaluate(_config(data_dir, **{"lr_plateau.factor": 0.0}), str(tmp_path / "x"))


def test_factor_scales_dense_and_sparse_updates_without_recompiling(data_dir):
  c = _config(data_dir, **{"optimizer.name": "sgd", "embedding.optimizer": "sgd"})
  c.embedding.learning_rate = 0.1
  c.optimizer.learning_rate = 0.1
  t = train.Trainer(c)
  batch = next(t.batches("train", train=True))
  init = jax.tree.map(np.asarray, t.init_state())
  deltas = []
  for factor in (1.0, 0.25):
    state = jax.tree.map(jnp.asarray, init)
    state = state.replace(lr_factor=jnp.float32(factor))
    new, _ = t.train_step(state, batch)
    deltas.append(
      [np.asarray(a) - b for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(init), strict=True)]
    )
  assert t._train_step._cache_size() == 1
  big = [np.abs(d).max() for d in deltas[0]]
  assert max(big) > 0
  for d1, d2 in zip(deltas[0], deltas[1], strict=True):
    if d1.dtype == np.float32 and d1.size > 1:  # params and tables (not the step/factor)
      np.testing.assert_allclose(d2, 0.25 * d1, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_embedding_l2_in_training(data_dir, tmp_path, mode):
  c = _config(data_dir, **{"embedding.l2": 0.05, "embedding.l2_mode": mode, "total_steps": 1})
  c.embedding.optimizer = "sgd"
  c.embedding.learning_rate = 0.1
  t = train.Trainer(c)
  ids = next(t.batches("train", train=True)).ids
  init = t.init_state()
  r = train.train_and_evaluate(c, str(tmp_path))
  for s in t.collection.stacks:
    before = np.asarray(init["emb"][s.name]["table"])
    after = np.asarray(r["final_state"]["emb"][s.name]["table"])
    uniq = np.asarray(ids[s.name]["uniq"])
    touched = np.zeros(s.rows, bool)
    touched[uniq[uniq < s.rows]] = True
    assert (~touched).any()
    changed = np.any(after != before, axis=1)
    if mode == "dense":
      assert changed.all()
      np.testing.assert_allclose(after[~touched], before[~touched] * (1 - 0.1 * 0.05), rtol=1e-6)
    else:
      assert not changed[~touched].any()
