"""onnxsim simplification that keeps the batch dynamic, validated against the unsimplified graph."""

from __future__ import annotations

import numpy as np
import onnx

from ..backends.onnxruntime import OnnxRuntimeRunner
from ..parity import compare
from .onnx import assert_dynamic_batch

# Simplification only refolds float arithmetic; anything beyond rounding noise means a broken rewrite.
MAX_REL_DIFF = 1e-5


def simplify(proto: onnx.ModelProto, batch: np.ndarray) -> tuple[onnx.ModelProto, dict]:
    """Return the simplified graph, or the original one with the reason it was rejected.

    onnxsim's own random-input check is off (check_n=0) and no input shape is overwritten, since that
    would fix the batch size; instead both graphs run on `batch` (real images) with ONNX Runtime."""
    import onnxsim

    info = {"applied": False, "nodes_before": len(proto.graph.node)}
    try:
        simplified, _ = onnxsim.simplify(proto, check_n=0)
        assert_dynamic_batch(simplified)
    except Exception as exc:  # onnxsim raises a variety of C++-level errors; keep the valid original
        info["rejected"] = f"onnxsim failed: {exc.__class__.__name__}: {str(exc)[:200]}"
        return proto, info
    original_out = OnnxRuntimeRunner(proto.SerializeToString())(batch)
    simplified_out = OnnxRuntimeRunner(simplified.SerializeToString())(batch)
    metrics = compare(original_out, simplified_out)
    info.update(nodes_after=len(simplified.graph.node), max_rel_vs_original=metrics["max_rel"])
    if metrics["nonfinite"]:
        info["rejected"] = f"simplified graph gives {metrics['nonfinite']} NaN/Inf values the original does not"
        return proto, info
    if metrics["max_rel"] > MAX_REL_DIFF:
        info["rejected"] = f"simplified graph differs from the original (max_rel {metrics['max_rel']:.3g})"
        return proto, info
    if len(simplified.graph.node) > len(proto.graph.node):
        info["rejected"] = "simplified graph has more nodes than the original"
        return proto, info
    info["applied"] = True
    return simplified, info
