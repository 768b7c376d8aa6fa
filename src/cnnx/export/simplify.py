"""onnxsim simplification that keeps the batch dynamic.

Whether the simplified graph still computes what the exported one does is judged by each artifact's parity
check against eager PyTorch (export/pipeline.py): an artifact that fails it is made again from the
unsimplified graph, and simplification is rejected if that one passes. So the common case, where onnxsim is
right, costs no extra ONNX Runtime session or inference."""

from __future__ import annotations

import onnx

from .onnx import assert_dynamic_batch


def simplify(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """Return the simplified graph, or the original one with the reason it was rejected.

    onnxsim's own random-input check is off (check_n=0) and no input shape is overwritten, since that
    would fix the batch size."""
    import onnxsim

    info = {"applied": False, "nodes_before": len(proto.graph.node)}
    try:
        simplified, _ = onnxsim.simplify(proto, check_n=0)
        assert_dynamic_batch(simplified)
    except Exception as exc:  # onnxsim raises a variety of C++-level errors; keep the valid original
        info["rejected"] = f"onnxsim failed: {exc.__class__.__name__}: {str(exc)[:200]}"
        return proto, info
    info["nodes_after"] = len(simplified.graph.node)
    if len(simplified.graph.node) > len(proto.graph.node):
        info["rejected"] = "simplified graph has more nodes than the original"
        return proto, info
    info["applied"] = True
    return simplified, info


def rejected_by_check(info: dict, precision: str) -> dict:
    """The simplification record of an artifact made from the unsimplified graph because the simplified one
    failed its parity check and the unsimplified one passed."""
    return {**info, "applied": False,
            "rejected": f"the {precision} artifact made from the simplified graph failed its parity check; "
                        "the one made from the unsimplified graph passed"}
