"""Model inputs, the model interface and the registry.

Models never see ids or tables: they take already looked-up embeddings
(`ModelInputs`), so one model runs on any embedding layout or encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax
import jax
import ml_collections
from flax import nnx

Array = jax.Array


@flax.struct.dataclass
class ModelInputs:
  """What a model sees for one batch.

  Attributes:
    fields: [B, F, D] one embedding per categorical/pooled field (numeric
      features encoded as embeddings are appended here too).
    linear: [B, F] first-order weight per field, or None. Present when the
      model sets ``needs_linear`` (the tables are then D+1 wide and the last
      column is the first-order weight, so one gather serves both).
    dense: [B, N] numeric features (already transformed); N may be 0.
    sequences: name -> [B, L, D] unpooled sequence embeddings (behaviour
      models), with masks under ``name + "/mask"`` ([B, L]).
  """

  fields: Array
  dense: Array
  linear: Array | None = None
  sequences: dict[str, Array] = flax.struct.field(default_factory=dict)

  @property
  def num_fields(self) -> int:
    return self.fields.shape[1]


class CTRModel(nnx.Module):
  """Base class: ``__call__(inputs, *, train, rngs) -> logits [B]``.

  Subclasses are constructed as ``cls(cfg, num_fields=F, embed_dim=D,
  num_dense=N, rngs=rngs)`` where ``cfg`` is the model's ConfigDict.
  """

  needs_linear: ClassVar[bool] = False
  # The model's hyperparameters (``config.model_config`` keys) with their defaults: the one
  # place they are declared; `build` rejects any other key.
  HPARAMS: ClassVar[dict[str, Any]] = {}

  def __call__(self, inputs: ModelInputs, *, train: bool = False, rngs: nnx.Rngs | None = None):
    raise NotImplementedError


_REGISTRY: dict[str, type[CTRModel]] = {}


def register(name: str) -> Callable[[type[CTRModel]], type[CTRModel]]:
  """Class decorator adding a model to the registry under ``name``."""

  def wrap(cls):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = cls
    cls.registry_name = name
    return cls

  return wrap


def get_model_class(name: str) -> type[CTRModel]:
  if name not in _REGISTRY:
    raise ValueError(f"config.model: unknown model {name!r}; registered: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def registered() -> list[str]:
  return sorted(_REGISTRY)


def hyperparameters(name: str, cfg) -> ml_collections.ConfigDict:
  """``cfg`` over the model's declared ``HPARAMS``; unknown keys fail naming the closest one."""
  from jaxctr import configs  # declarations only; nothing above models

  declared = get_model_class(name).HPARAMS
  given = dict(cfg or {})
  for key in given:
    if key not in declared:
      raise configs.ConfigKeyError(f"config.model_config ({name})", key, declared)
  return ml_collections.ConfigDict({**declared, **given})


def build(
  name: str,
  cfg: ml_collections.ConfigDict | dict[str, Any] | None,
  *,
  num_fields: int,
  embed_dim: int,
  num_dense: int,
  seed: int = 0,
) -> CTRModel:
  """Builds a registered model from its (validated, defaults-filled) hyperparameters."""
  cls = get_model_class(name)
  cfg = hyperparameters(name, cfg)
  return cls(
    cfg, num_fields=num_fields, embed_dim=embed_dim, num_dense=num_dense, rngs=nnx.Rngs(seed)
  )
