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
    field_names: Name of each of the F fields (static; empty when unknown), so
      behaviour models can find their target fields.
    ids: name -> raw ids ([B] of a categorical feature, [B, L] of a sequence,
      -1 at padding) for the models that declare ``needs_ids``. They serve as
      search keys only (SIM's same-category search, UBR4CTR's inverted index);
      models never embed ids themselves.
  """

  fields: Array
  dense: Array
  linear: Array | None = None
  sequences: dict[str, Array] = flax.struct.field(default_factory=dict)
  field_names: tuple[str, ...] = flax.struct.field(pytree_node=False, default=())
  ids: dict[str, Array] = flax.struct.field(default_factory=dict)

  @property
  def num_fields(self) -> int:
    return self.fields.shape[1]


@flax.struct.dataclass
class ModelOutput:
  """What a model may return instead of bare logits: logits plus auxiliary arrays.

  The trainer adds ``model.aux_loss(aux, logits, labels)`` to the CTR loss (e.g.
  SIM's soft-search auxiliary CTR loss, UBR4CTR's REINFORCE term); evaluation
  uses ``logits`` only.
  """

  logits: Array
  aux: dict[str, Array] = flax.struct.field(default_factory=dict)


def split_output(out) -> tuple[Array, dict[str, Array]]:
  """Logits and auxiliary arrays of a model's output (bare logits or `ModelOutput`)."""
  if isinstance(out, ModelOutput):
    return out.logits, out.aux
  return out, {}


class CTRModel(nnx.Module):
  """Base class: ``__call__(inputs, *, train, rngs) -> logits [B]`` (or a `ModelOutput`).

  Subclasses are constructed as ``cls(cfg, num_fields=F, embed_dim=D,
  num_dense=N, rngs=rngs)`` where ``cfg`` is the model's ConfigDict.

  Class attributes: ``needs_linear`` (tables get a first-order column),
  ``sequence_pooling`` (None: sequence features keep the dataset's pooling;
  "none": the model reads unpooled [B, L, D] sequences), ``needs_ids`` (the
  model gets raw ids in `ModelInputs.ids` as search keys).
  """

  needs_linear: ClassVar[bool] = False
  sequence_pooling: ClassVar[str | None] = None
  needs_ids: ClassVar[bool] = False
  # The model's hyperparameters (``config.model_config`` keys) with their defaults: the one
  # place they are declared; `build` rejects any other key.
  HPARAMS: ClassVar[dict[str, Any]] = {}

  def __call__(self, inputs: ModelInputs, *, train: bool = False, rngs: nnx.Rngs | None = None):
    raise NotImplementedError

  def aux_loss(self, aux: dict[str, Array], logits: Array, labels: Array) -> Array | float:
    """Extra loss terms from a `ModelOutput`'s ``aux`` (0 unless a model overrides it)."""
    del aux, logits, labels
    return 0.0


_REGISTRY: dict[str, type[CTRModel]] = {}
_FAMILY: dict[str, str] = {}
# Families: "zoo" models read fields only (the contract tests and the zoo benchmark run
# them on any dataset); "behaviour" models need a user-behaviour sequence column.
FAMILIES = ("zoo", "behaviour")


def register(name: str, family: str = "zoo") -> Callable[[type[CTRModel]], type[CTRModel]]:
  """Class decorator adding a model to the registry under ``name``."""
  if family not in FAMILIES:
    raise ValueError(f"model {name!r}: unknown family {family!r}; expected one of {FAMILIES}")

  def wrap(cls):
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = cls
    _FAMILY[name] = family
    cls.registry_name = name
    return cls

  return wrap


def get_model_class(name: str) -> type[CTRModel]:
  if name not in _REGISTRY:
    raise ValueError(f"config.model: unknown model {name!r}; registered: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def registered(family: str = "zoo") -> list[str]:
  """Registered model names of one family (``"all"``: every family)."""
  return sorted(n for n in _REGISTRY if family == "all" or _FAMILY[n] == family)


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
