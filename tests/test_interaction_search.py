"""Interaction search: the planted-interaction data, AutoFIS and OptInter end to end."""

import jax
import numpy as np
import pytest

from jaxctr.data import synthetic


def test_planted_pairs_have_their_kind_and_no_first_order_leak():
  gen = synthetic.SyntheticGenerator(synthetic.planted(s_first=0.0))
  truth = gen.planted_truth()
  assert len(truth["lowrank"]) == 3 and len(truth["cross"]) == 3
  assert not {tuple(p) for p in truth["lowrank"]} & {tuple(p) for p in truth["cross"]}
  for f, h in truth["cross"]:  # full rank: far above the latent rank a factorization uses
    t = gen.cross[(f, h)][1:, 1:]
    s = np.linalg.svd(t, compute_uv=False)
    assert np.sum(s > 0.1 * s[0]) > 2 * gen.config.latent_k
  d = gen.sample(40_000, "train")
  centred = d["logit"] - d["logit"].mean()
  for f in range(gen.config.num_categorical):  # each field alone explains ~nothing
    ids = d["cat"][:, f]
    means = np.bincount(ids, centred) / np.maximum(np.bincount(ids), 1)
    assert np.var(means[ids]) < 0.05 * np.var(centred), f
  assert synthetic.oracle_auc(d) > 0.8


def test_planted_needs_enough_fields():
  with pytest.raises(ValueError, match="planted pairs"):
    synthetic.SyntheticGenerator(synthetic.planted(num_categorical=4, num_cross_pairs=3))


# ------------------------------------------------------------------------------- models
def _inputs(b=16, f=5, d=4, seed=0):
  import jax.numpy as jnp

  from jaxctr.models import ModelInputs

  rng = np.random.default_rng(seed)
  return ModelInputs(
    fields=jnp.asarray(rng.normal(size=(b, f, d)), jnp.float32),
    dense=jnp.zeros((b, 0)),
    linear=jnp.asarray(rng.normal(size=(b, f)), jnp.float32),
  )


def test_autofis_mask_removes_exactly_the_masked_pairs():
  from jaxctr import models
  from jaxctr.models import layers

  x = _inputs()
  p = layers.num_pairs(5)
  full = models.build("autofis", {"base": "fm"}, num_fields=5, embed_dim=4, num_dense=0)
  fm = models.build("fm", {}, num_fields=5, embed_dim=4, num_dense=0)
  np.testing.assert_allclose(full(x), fm(x), rtol=1e-5, atol=1e-5)  # no mask: FM
  mask = np.ones(p, int)
  mask[[1, 7]] = 0
  masked = models.build(
    "autofis", {"base": "fm", "mask": tuple(mask)}, num_fields=5, embed_dim=4, num_dense=0
  )
  prods = np.asarray(layers.pairwise_products(x.fields))
  np.testing.assert_allclose(
    np.asarray(full(x)) - np.asarray(masked(x)), prods[:, 1] + prods[:, 7], rtol=1e-4, atol=1e-4
  )
  with pytest.raises(ValueError, match="model_config.mask"):
    models.build("autofis", {"mask": (1, 0)}, num_fields=5, embed_dim=4, num_dense=0)


def test_autofis_search_gates_start_near_point_six_and_get_grda():
  from flax import nnx

  from jaxctr import models, optim

  cfg = {"base": "deepfm", "search": True, "hidden": (8,)}
  m = models.build("autofis", cfg, num_fields=5, embed_dim=4, num_dense=0)
  gates = np.asarray(m.gates[...])
  assert gates.shape == (10,) and np.all(np.abs(gates - 0.6) < 0.01)
  params = nnx.state(m, nnx.Param)
  labels = jax.tree.leaves(optim.gate_labels(params))
  assert labels.count("gates") == 1 and "default" in labels
  # The batch norm has no scale or shift: the gate is the interaction's only weight.
  assert not any("bn" in str(path) for path, _ in nnx.to_flat_state(params))


def test_optinter_mixture_weights_and_temperature_anneal():
  import jax.numpy as jnp
  from flax import nnx

  from jaxctr import models

  cfg = {"search": True, "hidden": (8,), "tau_start": 1.0, "tau_end": 0.1, "anneal_steps": 4}
  m = models.build("optinter", cfg, num_fields=4, embed_dim=3, num_dense=0)
  m.alpha[...] = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
  x = _inputs(f=4, d=3)
  x = x.replace(sequences={"cross_embed": jnp.ones((16, 6, 3))})
  w0 = np.asarray(m.weights())
  np.testing.assert_allclose(w0, np.asarray(jax.nn.softmax(m.alpha[...], -1)))
  for _ in range(4):
    m(x, train=True, rngs=nnx.Rngs(dropout=0))
  m(x, train=False)  # evaluation does not advance the schedule
  assert float(m.step.get_value()) == 4.0
  np.testing.assert_allclose(
    np.asarray(m.weights()),
    np.asarray(jax.nn.softmax(m.alpha[...] / 0.1, -1)),
    rtol=1e-5,
  )
  gumbel = models.build(
    "optinter", dict(cfg, selection="gumbel"), num_fields=4, embed_dim=3, num_dense=0
  )
  a = np.asarray(gumbel.weights(train=True, rngs=nnx.Rngs(dropout=1)))
  b = np.asarray(gumbel.weights(train=False))
  assert not np.allclose(a, b) and np.allclose(a.sum(-1), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="model_config.choices"):
    models.build("optinter", {"choices": (0, 1)}, num_fields=4, embed_dim=3, num_dense=0)


# ----------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def planted_ds(tmp_path_factory):
  from jaxctr.data import builders

  scfg = synthetic.planted(
    num_categorical=6, num_lowrank_pairs=1, num_cross_pairs=1, max_vocab=40, s_pair=1.5
  )
  ccfg = builders.CtrConfig(
    name="planted_test", sizes=(24_000, 4_000, 4_000), chunk_rows=4096, synthetic=scfg
  )
  return builders.load_dataset(
    "synthetic_ctr", str(tmp_path_factory.mktemp("tfds")), builder_kwargs={"config": ccfg}
  )


def _pipeline_config(name, **kw):
  import importlib.util
  import os

  from tests.common import override

  path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments/synthetic", name)
  spec = importlib.util.spec_from_file_location("cfg_" + name[:-3], path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config()
  c.num_devices = 1
  c.progress_bar = False
  c.batch_size = 512
  c.num_epochs = 1
  c.model_config.hidden = (16,)
  c.early_stopping.patience = 0
  return override(c, kw)


def test_autofis_pipeline_keeps_planted_pairs_and_resumes(planted_ds, tmp_path):
  import json

  from jaxctr import search

  c = _pipeline_config(
    "autofis.py",
    **{"search.search_epochs": 3, "optimizer.grda_c": 0.6, "embedding.learning_rate": 0.02},
  )
  out = search.run(c, str(tmp_path), dataset=planted_ds)
  sel = json.loads((tmp_path / "selection.json").read_text())
  truth = {tuple(p) for k in ("lowrank", "cross") for p in planted_ds.info.extra["planted"][k]}
  gates = {tuple(r["pair"]): abs(r["gate"]) for r in sel["pairs"]}
  top = sorted(gates, key=gates.get)[-2:]
  assert set(top) == truth, (top, truth)
  assert sum(sel["mask"]) < len(sel["mask"])  # gRDA pruned pairs: exact zeros
  assert {tuple(p) for p in sel["cross_pairs"]} >= truth
  assert (tmp_path / "retrain" / "checkpoints").is_dir() and out["test_auc"] > 0.6
  # Both stages are done: a rerun returns the recorded result without training.
  assert search.run(c, str(tmp_path), dataset=planted_ds) == json.loads(
    (tmp_path / "result.json").read_text()
  )


def test_optinter_pipeline_memorizes_the_cross_pair(planted_ds, tmp_path):
  from jaxctr import search

  c = _pipeline_config("optinter.py", **{"model_config.memorized_hash_buckets": 20_000})
  c.search.search_epochs = 2
  out = search.run(c, str(tmp_path), dataset=planted_ds)
  import json

  sel = json.loads((tmp_path / "selection.json").read_text())
  kinds = {tuple(r["pair"]): r["kind"] for r in sel["pairs"]}
  (cross,) = planted_ds.info.extra["planted"]["cross"]
  assert kinds[tuple(cross)] == "memorized", kinds
  assert len(sel["memorized_pairs"]) == sel["choices"].count(1)
  assert out["test_auc"] > 0.6
