"""The model zoo. Importing this package registers every model."""

from jaxctr.models import (  # noqa: F401  (registration side effects)
  afm,
  autoint,
  dcn,
  dcnv2,
  deepfm,
  dlrm,
  dnn,
  ffm,
  fibinet,
  finalmlp,
  fm,
  fnn,
  fwfm,
  ipnn,
  lr,
  nfm,
  opnn,
  wide_deep,
  xdeepfm,
)
from jaxctr.models.base import (
  CTRModel,
  ModelInputs,
  build,
  get_model_class,
  hyperparameters,
  register,
  registered,
)

__all__ = [
  "CTRModel",
  "ModelInputs",
  "build",
  "get_model_class",
  "hyperparameters",
  "register",
  "registered",
]
