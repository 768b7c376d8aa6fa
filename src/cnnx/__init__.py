"""cnnx: export, verify, measure and deploy the classic CNNs.

Names that need PyTorch (create_model, the model registry) are imported on first use, through the module
`__getattr__` below, so that `import cnnx` and `cnnx.load(...)` work in an inference-only install without
torch (README, "Inference-only install"). `from cnnx import create_model` works as before.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from .errors import BackendUnavailable, CheckFailed, CnnxError, DownloadFailed, UsageError

try:
    __version__ = version("cnnx")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

# public name -> submodule that defines it; imported on first access
_LAZY = {
    "create_model": "weights",
    "pretrained_weights": "weights",
    "get_spec": "models.registry",
    "list_models": "models.registry",
    "ModelSpec": "models.registry",
    "load": "runtime",
    "Predictor": "runtime",
    "export_model": "export.pipeline",
    "ExportOptions": "export.pipeline",
    "check": "checking",
    "CheckResult": "reference",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from .checking import check
    from .export.pipeline import ExportOptions, export_model
    from .models.registry import ModelSpec, get_spec, list_models
    from .reference import CheckResult
    from .runtime import Predictor, load
    from .weights import create_model, pretrained_weights


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["create_model", "pretrained_weights", "get_spec", "list_models", "ModelSpec", "load", "Predictor",
           "export_model", "ExportOptions", "check", "CheckResult", "CnnxError", "UsageError", "CheckFailed",
           "BackendUnavailable", "DownloadFailed", "__version__"]
