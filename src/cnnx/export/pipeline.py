"""The export chain for one model: eager -> ONNX -> simplified -> fp32/fp16 artifacts, each with its
manifest and (by default) a parity check against the eager model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from .. import parity
from ..artifacts import (MANIFEST_FORMAT, atomic_path, manifest_path, prepare_output_dir, sha256_file,
                         tool_versions, utc_now, write_json)
from ..data import load_batch, sample_images
from ..errors import UsageError
from ..models.registry import get_spec
from ..verify import CheckResult, check_artifact, check_inputs
from ..weights import create_model
from .fp16 import lrn_nodes, to_fp16
from .onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, torch_to_onnx
from .simplify import simplify

PRECISIONS = ("fp32", "fp16")
Progress = Callable[[str], None]


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    check: CheckResult | None

    @property
    def passed(self) -> bool | None:
        return None if self.check is None else self.check.passed


def artifact_name(model: str, precision: str) -> str:
    return f"{model}-{precision}.onnx"


def export_model(name: str, *, precisions=("fp32",), out_dir: str | Path = "export",
                 weights: str | Path | None = None, seed: int = 0, opset: int = DEFAULT_OPSET,
                 simplify_graph: bool = True, check: bool = True, images: str | Path | None = None,
                 thresholds: dict[str, parity.Thresholds | None] | None = None,
                 progress: Progress = lambda stage: None) -> list[ExportResult]:
    spec = get_spec(name)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise UsageError(f"unknown precision {', '.join(unknown)}", f"choose from {', '.join(PRECISIONS)}")
    out = prepare_output_dir(out_dir)
    inputs = check_inputs(spec, images) if check else None  # bad images fail here, before any file is written
    timings: dict[str, float] = {}

    def stage(label: str, key: str, fn, *args, **kw):
        progress(label)
        start = time.perf_counter()
        result = fn(*args, **kw)
        timings[key] = round(time.perf_counter() - start, 3)
        return result

    model = stage(f"building {spec.name}", "build", create_model, spec.name, weights=weights, seed=seed)
    exported = stage("exporting to ONNX", "export", torch_to_onnx, model, spec, opset)
    sample = load_batch(sample_images(), spec.preprocess)
    graph, simplify_info = exported, {"applied": False, "skipped": "--no-simplify"}
    if simplify_graph:
        graph, simplify_info = stage("simplifying (onnxsim)", "simplify", simplify, exported, sample)

    weights_info = ({"source": "checkpoint", "path": str(Path(weights).resolve()), "sha256": sha256_file(weights)}
                    if weights is not None else {"source": "seed", "seed": seed})
    results = []
    for precision in precisions:
        variant_info: dict = {}
        proto = graph
        if precision == "fp16":
            proto, variant_info = stage("converting to fp16", "fp16", to_fp16, graph, sample, lrn_nodes(exported))
        path = out / artifact_name(spec.name, precision)
        progress(f"writing {path}")
        with atomic_path(path) as tmp:
            onnx.save(proto, tmp)
        manifest = {
            "format": MANIFEST_FORMAT, "artifact": path.name, "artifact_sha256": sha256_file(path),
            "artifact_bytes": path.stat().st_size, "model": spec.name, "family": spec.family,
            "variant": spec.variant, "precision": precision, "opset": opset,
            "input": {"name": INPUT_NAME, "shape": ["batch", *spec.input_shape], "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": ["batch", 1000], "dtype": "float32"},
            "preprocess": spec.preprocess.to_dict(), "weights": weights_info,
            "nodes": {"exported": len(exported.graph.node), "simplified": len(graph.graph.node),
                      "artifact": len(proto.graph.node)},
            "simplify": simplify_info, "precision_details": variant_info,
            "tools": tool_versions(), "created": utc_now(), "timings_s": dict(timings),
        }
        write_json(manifest_path(path), manifest)  # the check below reads it to rebuild the eager model
        result = None
        if check:
            result = stage(f"checking {path.name} against eager PyTorch", f"check_{precision}", check_artifact,
                           path, thresholds=(thresholds or {}).get(precision), eager=model, inputs=inputs)
            manifest["parity"] = result.to_dict()
            manifest["timings_s"] = dict(timings)
            write_json(manifest_path(path), manifest)
        results.append(ExportResult(path=path, manifest=manifest, check=result))
    return results
