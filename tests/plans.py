"""Stand-in TensorRT plans for the tests that run without TensorRT: the bytes are never executed, only
their PlanManifest matters (compatibility checks, Triton repositories, the runtime's refusals)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cnnx.artifacts import sha256_file
from cnnx.data import imagenet_preprocess
from cnnx.manifest import PlanManifest, TensorSpec, write_manifest


def plan_manifest(trt_version="10.13.0.35", cc="8.9", gpu="NVIDIA L4", max_batch=8, **flags) -> PlanManifest:
    profile = {"input": "images", "min": [1, 3, 224, 224], "opt": [max_batch, 3, 224, 224],
               "max": [max_batch, 3, 224, 224], "min_batch": 1, "opt_batch": max_batch, "max_batch": max_batch}
    return PlanManifest(
        artifact="nin-fp32-b1-8.plan", artifact_sha256="", artifact_bytes=0, model="nin", precision="fp32",
        source={"onnx": "export/nin-fp32.onnx", "onnx_sha256": "0" * 64, "onnx_manifest": None},
        input=TensorSpec("images", ("batch", 3, 224, 224)), output=TensorSpec("logits", ("batch", 1000)),
        preprocess=imagenet_preprocess(224), profile=profile,
        tensorrt={"version": trt_version, "strongly_typed": True}, gpu={"name": gpu, "compute_capability": cc},
        build_flags={"version_compatible": False, "hardware_compatibility": None, **flags},
        timing_cache={"used": False}, build_seconds=1.0,
        rebuild_command="cnnx build export/nin-fp32.onnx --max-batch 8", tools={}, created="2026-01-01T00:00:00+00:00")


def write_fake_plan(folder: Path, manifest: PlanManifest, name: str = "nin-fp32-b1-8.plan") -> Path:
    plan = Path(folder) / name
    plan.write_bytes(b"not a real plan: only its manifest matters here")
    write_manifest(plan, replace(manifest, artifact=plan.name, artifact_sha256=sha256_file(plan),
                                 artifact_bytes=plan.stat().st_size))
    return plan
