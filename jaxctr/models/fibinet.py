"""FiBiNET (Huang et al., RecSys 2019): SENET field re-weighting + bilinear interactions.

* SENET: squeeze each field embedding to its mean, excite with two ReLU layers
  (F -> F/r -> F), and re-weight the fields: ``V' = a * V``.
* Bilinear interaction on both V and V': ``p_ij = (v_i W) * v_j`` with W shared by all pairs
  ("field_all"), one per field i ("field_each") or one per pair ("field_interaction").
* The two sets of pair vectors are concatenated with the raw numeric features into a DNN;
  its logit is added to the first-order term (as in the paper).

Config: ``reduction_ratio`` (default 3), ``bilinear_type`` (default "field_interaction"),
``hidden`` (default 400-400-400), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers

_BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")


class SENet(nnx.Module):
  """Squeeze-and-excitation over fields: [B, F, D] -> [B, F, D]."""

  def __init__(self, num_fields: int, reduction_ratio: float, *, rngs: nnx.Rngs):
    hidden = max(1, int(num_fields / reduction_ratio))
    self.squeeze = nnx.Linear(num_fields, hidden, use_bias=False, rngs=rngs)
    self.excite = nnx.Linear(hidden, num_fields, use_bias=False, rngs=rngs)

  def __call__(self, v):
    z = v.mean(axis=-1)
    a = jax.nn.relu(self.excite(jax.nn.relu(self.squeeze(z))))
    return v * a[..., None]


class Bilinear(nnx.Module):
  """Bilinear pair interaction: [B, F, D] -> [B, P, D]."""

  def __init__(self, num_fields: int, embed_dim: int, kind: str, *, rngs: nnx.Rngs):
    if kind not in _BILINEAR_TYPES:
      raise ValueError(f"fibinet: bilinear_type {kind!r} not in {_BILINEAR_TYPES}")
    self.kind = kind
    lead = {
      "field_all": (),
      "field_each": (num_fields,),
      "field_interaction": (layers.num_pairs(num_fields),),
    }
    self.w = layers.normal_param(rngs, (*lead[kind], embed_dim, embed_dim), embed_dim**-0.5)

  def __call__(self, v):
    w = self.w[...]
    if self.kind == "field_each":
      # v_i W_i once per field, then paired: F matmuls instead of P.
      left, _ = layers.pair_fields(jnp.einsum("bfd,fde->bfe", v, w))
      _, right = layers.pair_fields(v)
      return left * right
    left, right = layers.pair_fields(v)
    if self.kind == "field_all":
      return jnp.einsum("bpd,de->bpe", left, w) * right
    return jnp.einsum("bpd,pde->bpe", left, w) * right


@base.register("fibinet")
class FiBiNET(base.CTRModel):
  needs_linear = True

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "bilinear_type": "field_interaction",
    "reduction_ratio": 3,
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    kind = cfg.bilinear_type
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)
    self.senet = SENet(num_fields, float(cfg.reduction_ratio), rngs=rngs)
    self.bilinear = Bilinear(num_fields, embed_dim, kind, rngs=rngs)
    self.bilinear_se = Bilinear(num_fields, embed_dim, kind, rngs=rngs)
    width = 2 * layers.num_pairs(num_fields) * embed_dim + num_dense
    self.dnn = layers.mlp_from_config(cfg, width, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    v = inputs.fields
    b = v.shape[0]
    p = self.bilinear(v).reshape(b, -1)
    q = self.bilinear_se(self.senet(v)).reshape(b, -1)
    deep = self.dnn(jnp.concatenate([p, q, inputs.dense], axis=-1), train=train, rngs=rngs)[:, 0]
    return self.linear(inputs) + deep
