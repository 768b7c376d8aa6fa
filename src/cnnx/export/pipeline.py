"""The export chain for one model: eager -> ONNX -> simplified -> fp32/fp16 artifacts, each with its
manifest and (by default) a parity check against the eager model."""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from .. import parity
from ..artifacts import (MANIFEST_FORMAT, atomic_path, manifest_path, prepare_output_dir, sha256_file,
                         tool_versions, utc_now, write_json)
from ..data import image_files, load_batch, sample_images
from ..errors import UsageError
from ..models.registry import get_spec
from ..backends.torch import TorchRunner
from ..verify import CheckData, CheckResult, check_artifact, check_data
from ..weights import create_model
from . import int8
from .calibration import DEFAULT_CALIB_SIZE, load_calibration
from .fp16 import lrn_nodes, to_fp16
from .onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME, torch_to_onnx
from .simplify import simplify

PRECISIONS = ("fp32", "fp16", "int8")
VALIDATION_PHOTOS = 4
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


def weights_source(weights: str | Path | None, seed: int) -> dict:
    """How the eager model is made, as recorded in manifests: a checkpoint (path + sha256) or a seed."""
    if weights is None:
        return {"source": "seed", "seed": seed}
    return {"source": "checkpoint", "path": str(Path(weights).resolve()), "sha256": sha256_file(weights)}


def export_model(name: str, *, precisions=("fp32",), out_dir: str | Path = "export",
                 weights: str | Path | None = None, seed: int = 0, opset: int = DEFAULT_OPSET,
                 simplify_graph: bool = True, check: bool = True, images: str | Path | None = None,
                 thresholds: dict[str, parity.Thresholds | None] | None = None,
                 progress: Progress = lambda stage: None, calib_data: str | Path | None = None,
                 calib_size: int = DEFAULT_CALIB_SIZE, calib_method: str = int8.DEFAULT_METHOD,
                 int8_target: str = int8.DEFAULT_TARGET, int8_exclude: str | list[str] | None = None,
                 recalibrate: bool = False) -> list[ExportResult]:
    """Export `name` at each precision. "int8" needs calib_data (a folder of images, a .npy/.npz file
    of preprocessed tensors, "samples" or "random"; see export/calibration.py) and quantizes the simplified
    fp32 graph (see export/int8.py); its check uses held-out photos only."""
    spec = get_spec(name)
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise UsageError(f"unknown precision {', '.join(unknown)}", f"choose from {', '.join(PRECISIONS)}")
    # int8 last, so that it can quantize the fp32 artifact's file when both are asked for
    precisions = sorted(dict.fromkeys(precisions), key=lambda p: p == "int8")
    calib = None
    if "int8" in precisions:  # every calibration-data problem fails here, before anything is written
        int8.validate_options(calib_method, int8_target, int8_exclude)
        calib = load_calibration(calib_data, spec, calib_size, seed=seed)
    out = prepare_output_dir(out_dir)
    if check and images is not None:
        image_files(images)  # a bad image folder fails here, before any work
    timings: dict[str, float] = {}

    def stage(label: str, key: str, fn, *args, **kw):
        progress(label)
        start = time.perf_counter()
        result = fn(*args, **kw)
        timings[key] = round(time.perf_counter() - start, 3)
        return result

    model = stage(f"building {spec.name}", "build", create_model, spec.name, weights=weights, seed=seed)
    # Bad images fail here, before any file is written; eager outputs are computed once for all precisions.
    data = None
    if check:
        data = stage("running eager PyTorch on the check inputs", "eager", check_data, model, spec, images)
    exported = stage("exporting to ONNX", "export", torch_to_onnx, model, spec, opset)
    # A few photos suffice to validate simplification and find fp16 overflow risks; more only cost time.
    sample = load_batch(sample_images()[:VALIDATION_PHOTOS], spec.preprocess)
    graph, simplify_info = exported, {"applied": False, "skipped": "--no-simplify"}
    if simplify_graph:
        graph, simplify_info = stage("simplifying (onnxsim)", "simplify", simplify, exported, sample)
    if calib is not None and int8_exclude not in (None, "auto"):
        int8.check_exclude(graph, list(int8_exclude))  # before any artifact is written

    weights_info = weights_source(weights, seed)
    results, written = [], {}
    for precision in precisions:
        variant_info: dict = {}
        proto = graph
        if precision == "fp16":
            proto, variant_info = stage("converting to fp16", "fp16", to_fp16, graph, sample, lrn_nodes(exported))
        path = out / artifact_name(spec.name, precision)
        if precision == "int8":
            int8_check, variant_info = stage("quantizing to int8", "int8", _write_int8, path, graph, out, spec,
                                             model, calib, weights_info, opset, simplify_info, calib_method,
                                             int8_target, int8_exclude, recalibrate, progress,
                                             written.get("fp32"))
        else:
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
                      "artifact": variant_info["qdq"]["nodes"] if precision == "int8" else len(proto.graph.node)},
            "simplify": simplify_info, "precision_details": variant_info,
            "tools": tool_versions(), "created": utc_now(), "timings_s": dict(timings),
        }
        write_json(manifest_path(path), manifest)  # the check below reads it to rebuild the eager model
        result = None
        if check:
            result = stage(f"checking {path.name} against eager PyTorch", f"check_{precision}", check_artifact,
                           path, thresholds=(thresholds or {}).get(precision),
                           data=int8_check if precision == "int8" else data)
            manifest["parity"] = result.to_dict()
            manifest["timings_s"] = dict(timings)
            write_json(manifest_path(path), manifest)
        written[precision] = path
        results.append(ExportResult(path=path, manifest=manifest, check=result))
    return results


def _write_int8(path: Path, graph: onnx.ModelProto, out: Path, spec, model, calib, weights_info: dict, opset: int,
                simplify_info: dict, method: str, target: str, exclude, recalibrate: bool,
                progress: Progress, fp32_file: Path | None) -> tuple[CheckData, dict]:
    """Quantize the simplified fp32 graph into `path` (atomically). Returns the held-out check data (eager
    outputs of the held-out photos, never calibration images) and the manifest's precision details."""
    expected = TorchRunner(model)(calib.holdout)
    check = CheckData(inputs=calib.holdout, expected=expected,
                      described={**calib.holdout_described, "random": 0, "held_out": True})
    key_parts = {"model": spec.name, "weights": weights_info, "opset": opset,
                 "simplified": bool(simplify_info.get("applied")), "onnxruntime": tool_versions().get("onnxruntime")}
    with contextlib.ExitStack() as stack:
        if fp32_file is None:  # no fp32 artifact written by this export: quantize a temporary copy
            tmp_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cnnx-fp32-")))
            fp32_file = tmp_dir / "fp32.onnx"
            onnx.save(graph, fp32_file)
        tmp = stack.enter_context(atomic_path(path))
        details = int8.build_int8(fp32_file, graph, tmp, calib=calib, holdout_expected=expected, method=method,
                                  target=target, exclude=exclude, cache_dir=out / int8.CACHE_DIR,
                                  key_parts=key_parts, recalibrate=recalibrate, progress=progress)
    return check, details
