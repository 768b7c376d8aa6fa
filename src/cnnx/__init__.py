"""cnnx: export, verify, measure and deploy the classic CNNs."""

from importlib.metadata import PackageNotFoundError, version

from .errors import BackendUnavailable, CheckFailed, CnnxError, UsageError
from .models.registry import ModelSpec, get_spec, list_models
from .weights import create_model

try:
    __version__ = version("cnnx")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

__all__ = ["create_model", "get_spec", "list_models", "ModelSpec", "CnnxError", "UsageError",
           "CheckFailed", "BackendUnavailable", "__version__"]
