"""`cnnx export --target`: what the export use case does about a TensorRT engine for each ONNX artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..backends.tensorrt import unavailable_reason
from ..backends.tensorrt.build import build_command, build_engine
from ..errors import BackendUnavailable, UsageError
from ..manifest import PlanManifest
from . import TARGETS


@dataclass
class EngineOutcome:
    """What `export --target` did about a TensorRT engine for one ONNX artifact."""

    target: str
    built: bool
    plan: str | None = None
    manifest: PlanManifest | None = field(default=None, repr=False)
    reason: str | None = None  # why no engine was built
    command: str | None = None  # what to run on a GPU machine instead

    def to_dict(self) -> dict:
        return {**asdict(self), "manifest": self.manifest.to_dict() if self.manifest else None}


def engine_for_artifact(onnx_path: str | Path, target: str = "auto", **build_options) -> EngineOutcome:
    """`auto`: build when TensorRT and a GPU are usable, else report why not and the command for a GPU machine.
    `tensorrt`: build, or raise BackendUnavailable (exit 3) with that reason; the ONNX file stays either way.
    `onnx`: do nothing. A plan already built from the same ONNX bytes with the same settings on this TensorRT and
    GPU is reused rather than built again."""
    if target not in TARGETS:
        raise UsageError(f"unknown target '{target}'", f"choose from {', '.join(TARGETS)}")
    if target == "onnx":
        return EngineOutcome(target, built=False, reason="--target onnx: no engine requested")
    command = build_command(onnx_path, **build_options)
    reason = unavailable_reason()
    if reason:
        if target == "tensorrt":
            raise BackendUnavailable(f"--target tensorrt: cannot build a TensorRT engine here: {reason}",
                                     f"the ONNX artifact '{onnx_path}' is kept; on a machine with an NVIDIA GPU "
                                     f"and TensorRT run: {command}")
        return EngineOutcome(target, built=False, reason=reason, command=command)
    plan, manifest = build_engine(onnx_path, reuse=True, **build_options)
    return EngineOutcome(target, built=True, plan=str(plan), manifest=manifest)
