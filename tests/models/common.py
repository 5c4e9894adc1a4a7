"""Shared helpers for the model tests: small configs and synthetic model inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxctr import models
from jaxctr.models import ModelInputs

B, F, D, N = 8, 5, 4, 3

# Small variants of every model (the defaults are paper-sized and slow to compile on 2 cores).
# One entry per configuration exercised; a model may appear under several names.
SMALL = {"hidden": (16, 8)}
VARIANTS: dict[str, tuple[str, dict]] = {
  "lr": ("lr", {}),
  "fm": ("fm", {}),
  "deepfm": ("deepfm", SMALL),
  "fwfm": ("fwfm", {}),
  "ffm": ("ffm", {}),
  "nfm": ("nfm", {"hidden": (8,), "bi_dropout": 0.1}),
  "afm": ("afm", {"attention_dim": 6, "dropout": 0.1}),
  "dnn": ("dnn", {"hidden": (16, 8), "dropout": 0.1}),
  "dnn_bn": ("dnn", {"hidden": (16, 8), "batch_norm": True}),
  "fnn": ("fnn", SMALL),
  "wide_deep": ("wide_deep", {**SMALL, "cross_pairs": (("c0", "c1"), ("c1", "c2"))}),
  "wide_deep_nocross": ("wide_deep", SMALL),
  "ipnn": ("ipnn", SMALL),
  "opnn": ("opnn", SMALL),
  "opnn_mat": ("opnn", {**SMALL, "product_type": "mat"}),
  "opnn_vec": ("opnn", {**SMALL, "product_type": "vec"}),
  "opnn_num": ("opnn", {**SMALL, "product_type": "num"}),
  "dcn": ("dcn", {**SMALL, "cross_layers": 2}),
  "dcnv2": ("dcnv2", {**SMALL, "cross_layers": 2}),
  "dcnv2_moe_stacked": (
    "dcnv2",
    {**SMALL, "cross_layers": 2, "low_rank": 3, "num_experts": 2, "structure": "stacked"},
  ),
  "dcnv2_lowrank_nodnn": ("dcnv2", {"hidden": (), "cross_layers": 2, "low_rank": 3}),
  "xdeepfm": ("xdeepfm", {**SMALL, "cin_layers": (6, 4)}),
  "xdeepfm_relu_nosplit": (
    "xdeepfm",
    {"hidden": (), "cin_layers": (5, 3), "split_half": False, "cin_activation": "relu"},
  ),
  "autoint": ("autoint", {"attention_layers": 2, "num_heads": 2, "attention_dim": 4}),
  "autoint_plus": (
    "autoint",
    {**SMALL, "attention_layers": 1, "attention_dim": 3, "layer_norm": True},
  ),
  "fibinet": ("fibinet", {**SMALL, "reduction_ratio": 1}),
  "fibinet_all": ("fibinet", {**SMALL, "reduction_ratio": 1, "bilinear_type": "field_all"}),
  "fibinet_each": ("fibinet", {**SMALL, "reduction_ratio": 1, "bilinear_type": "field_each"}),
  "dlrm": ("dlrm", {"bottom_hidden": (8,), "hidden": (16, 8)}),
  "autofis": ("autofis", {**SMALL, "base": "deepfm"}),
  "autofis_fm_masked": ("autofis", {"base": "fm", "mask": (1, 0) * 5}),
  "autofis_search": ("autofis", {**SMALL, "search": True}),
  "optinter": ("optinter", SMALL),
  "optinter_chosen": ("optinter", {**SMALL, "choices": (0, 2) * 5}),
  "finalmlp": (
    "finalmlp",
    {"mlp1_hidden": (16, 8), "mlp2_hidden": (12,), "fs_hidden": (8,), "num_heads": 2},
  ),
  "finalmlp_ctx": (
    "finalmlp",
    {"mlp1_hidden": (8,), "mlp2_hidden": (8,), "fs_hidden": (8,), "fs1_context": (0, 2)},
  ),
}


def table_width(name: str, embed_dim: int = D, num_fields: int = F) -> int:
  """Width of `inputs.fields` as the trainer serves it (the first-order column split off)."""
  cls = models.get_model_class(name)
  table_dim = getattr(cls, "table_dim", None)
  if table_dim is None:
    return embed_dim
  return table_dim(embed_dim, num_fields) - (1 if cls.needs_linear else 0)


def make_inputs(name: str, cfg: dict, *, batch=B, num_fields=F, embed_dim=D, num_dense=N, seed=0):
  """Random inputs shaped as the trainer serves them for model `name`."""
  k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
  width = table_width(name, embed_dim, num_fields)
  cls = models.get_model_class(name)
  sequences = {}
  if name == "wide_deep" and cfg.get("cross_pairs"):
    sequences["cross_linear"] = jax.random.normal(k4, (batch, len(cfg["cross_pairs"])))
  return ModelInputs(
    fields=jax.random.normal(k1, (batch, num_fields, width)),
    dense=jax.random.normal(k2, (batch, num_dense)),
    linear=jax.random.normal(k3, (batch, num_fields)) if cls.needs_linear else None,
    sequences=sequences,
  )


def build(name: str, cfg: dict, *, num_fields=F, embed_dim=D, num_dense=N, seed=0):
  return models.build(
    name, cfg, num_fields=num_fields, embed_dim=embed_dim, num_dense=num_dense, seed=seed
  )


def assert_close(a, b, tol=1e-5):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


__all__ = ["B", "D", "F", "N", "VARIANTS", "assert_close", "build", "jnp", "make_inputs"]
