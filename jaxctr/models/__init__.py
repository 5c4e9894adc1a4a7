"""The model zoo. Importing this package registers every model.

Behaviour models (can, din, sim, ubr4ctr) register in the "behaviour" family.
"""

from jaxctr.models import (  # noqa: F401  (registration side effects)
  afm,
  autofis,
  autoint,
  can,
  dcn,
  dcnv2,
  deepfm,
  din,
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
  optinter,
  sim,
  ubr4ctr,
  wide_deep,
  xdeepfm,
)
from jaxctr.models.base import (
  CTRModel,
  ModelInputs,
  ModelOutput,
  build,
  get_model_class,
  hyperparameters,
  register,
  registered,
  split_output,
)

__all__ = [
  "CTRModel",
  "ModelInputs",
  "ModelOutput",
  "build",
  "get_model_class",
  "hyperparameters",
  "register",
  "registered",
  "split_output",
]
