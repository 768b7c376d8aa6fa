"""Runners: one interface over every inference backend (see base.py), and one factory for artifacts."""

from __future__ import annotations

from pathlib import Path

from .base import Runner

# Backends that run an exported ONNX artifact (TensorRT through a plan built from it).
ARTIFACT_BACKENDS = ("onnxruntime", "openvino", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


def artifact_runner(backend: str, onnx_path: str | Path, *, threads: int | None = None,
                    inference_precision: str = "f32", max_batch: int = 32) -> Runner:
    """A Runner for an ONNX artifact on `backend`. For "tensorrt" the plan is built (or reused) from the
    ONNX file; an unusable backend raises BackendUnavailable with the reason."""
    from ..errors import UsageError

    if backend == "onnxruntime":
        from .onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(onnx_path, threads=threads)
    if backend == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(onnx_path, threads=threads, inference_precision=inference_precision)
    if backend in ("onnxruntime-cuda", "onnxruntime-tensorrt"):
        from .onnxruntime_gpu import OnnxRuntimeCudaRunner, OnnxRuntimeTensorRTRunner

        runner_class = OnnxRuntimeCudaRunner if backend == "onnxruntime-cuda" else OnnxRuntimeTensorRTRunner
        return runner_class(onnx_path)
    if backend == "tensorrt":
        from ..errors import BackendUnavailable
        from .tensorrt import TensorRTRunner, engine_for_artifact, unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(f"backend 'tensorrt' is unavailable: {reason}",
                                     f"on a machine with an NVIDIA GPU and TensorRT: cnnx build {onnx_path}")
        outcome = engine_for_artifact(onnx_path, "tensorrt", max_batch=max_batch)  # exit 3 with the reason
        return TensorRTRunner(outcome.plan)
    raise UsageError(f"unknown backend '{backend}'", f"choose from {', '.join(ARTIFACT_BACKENDS)}")
