"""Field-aware FM (Juan et al., RecSys 2016): each id has one latent vector per other field.

  logit = w0 + sum_i w_i + <w_n, dense> + sum_{i<j} <v_{i,F(j)}, v_{j,F(i)}>

Embedding layout. The model stays id-free: it asks the trainer for wider tables through the
classmethod `table_dim(embed_dim, num_fields)`, the full row width ``embed_dim * num_fields
+ 1`` (the trainer still splits the last column off as the first-order weight because
``needs_linear`` is set). It then receives ``inputs.fields`` of shape [B, F, F*D], where
``fields[:, i, j*D:(j+1)*D]`` is the vector field i's id uses when it meets field j (the
block j == i is unused: FFM has no self-interaction; it costs one D-slice per row and keeps
the layout a plain reshape).

Numeric features enter the linear part only (the paper has no numeric features).
"""

from flax import nnx

from jaxctr.models import base, layers


@base.register("ffm")
class FFM(base.CTRModel):
  needs_linear = True

  @classmethod
  def table_dim(cls, embed_dim: int, num_fields: int) -> int:
    """Row width of every table: F latent vectors of width D, then the first-order weight."""
    return embed_dim * num_fields + 1

  # Hyperparameters (config.model_config keys) and their defaults.
  HPARAMS = {}

  def __init__(self, cfg, *, num_fields, embed_dim, num_dense, rngs: nnx.Rngs):
    del cfg
    self.num_fields, self.embed_dim = num_fields, embed_dim
    self.linear = layers.LinearTerm(num_dense, rngs=rngs)

  def __call__(self, inputs, *, train=False, rngs=None):
    b, f, width = inputs.fields.shape
    if width != self.embed_dim * self.num_fields:
      raise ValueError(
        f"FFM expects fields of width embed_dim*num_fields={self.embed_dim * f}, got {width}: "
        "the trainer must size tables with FFM.table_dim()"
      )
    v = inputs.fields.reshape(b, f, f, self.embed_dim)  # [B, field, other field, D]
    # <v_{i, F(j)}, v_{j, F(i)}> for every pair i<j, from static slices (no gather): row i of
    # the upper triangle against column i of the lower one.
    pair = sum((v[:, i, i + 1 :] * v[:, i + 1 :, i]).sum(axis=(1, 2)) for i in range(f - 1))
    return self.linear(inputs) + pair
