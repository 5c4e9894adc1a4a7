"""DCN-V2 (Wang et al., WWW 2021): matrix cross layers, optionally low-rank mixture of experts.

Full-rank cross layer (``low_rank = 0``)::

  x_{l+1} = x0 * (W_l x_l + b_l) + x_l

Low-rank mixture of experts (``low_rank = r > 0``, ``num_experts = E``)::

  E_e(x_l) = x0 * (U_e tanh(C_e tanh(V_e^T x_l)) + b_e)     (U_e, V_e: K x r, C_e: r x r)
  x_{l+1}  = sum_e softmax_e(g_e(x_l)) E_e(x_l) + x_l         (no gate when E == 1)

The input ``x0`` is the field embeddings concatenated with the raw numeric features.
``structure="stacked"``: cross network then DNN; ``"parallel"``: both on x0, outputs
concatenated. Either way a final linear layer gives the logit.

Config: ``cross_layers`` (default 3), ``low_rank`` (default 0: full rank), ``num_experts``
(default 1; low-rank only), ``structure`` (default "parallel"), ``hidden`` (default
400-400-400; empty: cross network only), ``activation``, ``dropout``, ``batch_norm``.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxctr.models import base, layers


class LowRankExpert(nnx.Module):
  """One low-rank expert: x_l -> U tanh(C tanh(V^T x_l)) + b (before the x0 product)."""

  def __init__(self, width: int, rank: int, *, rngs: nnx.Rngs):
    self.v = nnx.Linear(width, rank, use_bias=False, rngs=rngs)
    self.c = nnx.Linear(rank, rank, use_bias=False, rngs=rngs)
    self.u = nnx.Linear(rank, width, rngs=rngs)

  def __call__(self, x):
    return self.u(jnp.tanh(self.c(jnp.tanh(self.v(x)))))


class CrossNetV2(nnx.Module):
  """DCN-V2 cross network: [B, K] -> [B, K]."""

  def __init__(self, width: int, num_layers: int, *, low_rank: int = 0, num_experts: int = 1, rngs):
    self.low_rank = low_rank
    if low_rank <= 0:
      self.dense = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(num_layers)])
    else:
      self.experts = nnx.List(
        [
          nnx.List([LowRankExpert(width, low_rank, rngs=rngs) for _ in range(num_experts)])
          for _ in range(num_layers)
        ]
      )
      # A softmax over one expert is constant 1: no gate then (its weights would get no gradient).
      self.gates = nnx.List(
        [nnx.Linear(width, num_experts, use_bias=False, rngs=rngs) for _ in range(num_layers)]
        if num_experts > 1
        else []
      )

  def __call__(self, x0):
    x = x0
    if self.low_rank <= 0:
      for layer in self.dense:
        x = x0 * layer(x) + x
      return x
    for layer, experts in enumerate(self.experts):
      outs = jnp.stack([x0 * e(x) for e in experts], axis=1)  # [B, E, K]
      if self.gates:
        g = jax.nn.softmax(self.gates[layer](x), axis=-1)  # [B, E]
        mixed = (g[..., None] * outs).sum(axis=1)
      else:
        mixed = outs[:, 0]
      x = mixed + x
    return x


@base.register("dcnv2")
class DCNv2(base.CTRModel):
  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {
    "structure": "parallel",
    "cross_layers": 3,
    "low_rank": 0,
    "num_experts": 1,
    "hidden": (400, 400, 400),
    "activation": "relu",
    "dropout": 0.0,
    "batch_norm": False,
  }

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    width = num_fields * embed_dim + num_dense
    self.structure = cfg.structure
    if self.structure not in ("stacked", "parallel"):
      raise ValueError(f"dcnv2: structure must be stacked|parallel, got {self.structure!r}")
    self.cross = CrossNetV2(
      width,
      int(cfg.cross_layers),
      low_rank=int(cfg.low_rank),
      num_experts=int(cfg.num_experts),
      rngs=rngs,
    )
    hidden = tuple(cfg.hidden)
    # Declared as data up front: a module assigned later to an attribute first set to None
    # would otherwise be rejected as a change of a static attribute.
    self.dnn = nnx.data(None)
    if hidden:
      self.dnn = layers.mlp_from_config(cfg, width, out_features=None, rngs=rngs)
    if self.dnn is None:
      out_width = width
    elif self.structure == "stacked":
      out_width = self.dnn.out_features
    else:
      out_width = width + self.dnn.out_features
    self.out = nnx.Linear(out_width, 1, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    x0 = layers.flatten_fields(inputs)
    crossed = self.cross(x0)
    if self.dnn is None:
      h = crossed
    elif self.structure == "stacked":
      h = self.dnn(crossed, train=train, rngs=rngs)
    else:
      h = jnp.concatenate([crossed, self.dnn(x0, train=train, rngs=rngs)], axis=-1)
    return self.out(h)[:, 0]
