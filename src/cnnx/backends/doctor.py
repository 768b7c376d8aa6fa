"""`cnnx doctor`: which backends are usable here and, for each that is not, why; and the runtimes they run on.

Everything comes from the backend registry: each entry names its runtime package, and each Runner class says
what more to show about its runtime (devices, providers)."""

from __future__ import annotations

import importlib.util

from ..artifacts import package_version
from . import BACKENDS


def backend_reasons() -> dict[str, str | None]:
    """Per registered backend: None when usable, else why not."""
    return {name: backend.unavailable_reason() for name, backend in BACKENDS.items()}


def runtime_report() -> dict[str, dict]:
    """Per runtime package of the registry, in table order: installed, version, and what its Runner adds."""
    report: dict[str, dict] = {}
    for backend in BACKENDS.values():
        if backend.package in report:
            continue
        entry: dict = {"installed": importlib.util.find_spec(backend.package) is not None,
                       "version": package_version(backend.package)}
        if entry["installed"]:
            try:
                entry.update(backend.runner_class().runtime_details())
            except Exception as exc:  # installed but broken (a missing shared library, a CUDA mismatch)
                entry["error"] = f"{exc.__class__.__name__}: {exc}"
        report[backend.package] = entry
    return report


def doctor_report() -> dict:
    """Everything `cnnx doctor` shows: the runtimes, the GPU, and each backend's availability."""
    from ..hardware import gpu_info

    return {"runtimes": runtime_report(), "gpu": gpu_info(),
            "backends": {name: {"usable": reason is None, "reason": reason}
                         for name, reason in backend_reasons().items()}}
