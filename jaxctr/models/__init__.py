"""The model zoo. Importing this package registers every model."""

from jaxctr.models import deepfm, fm, lr  # noqa: F401  (registration side effects)
from jaxctr.models.base import CTRModel, ModelInputs, build, get_model_class, register, registered

__all__ = ["CTRModel", "ModelInputs", "build", "get_model_class", "register", "registered"]
