"""onnxsim simplification that keeps the batch dynamic.

Whether the simplified graph still computes what the exported one does is judged through each artifact's parity
check against eager PyTorch (export/pipeline.py): when an artifact fails it, the simplified fp32 graph is checked,
and if it fails where the unsimplified graph passes, simplification is rejected and the artifact made again from
the unsimplified graph. So the common case, where onnxsim is right, costs no extra ONNX Runtime session."""

from __future__ import annotations

import onnx

from .onnx import assert_dynamic_batch


def simplify(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict]:
    """Return the simplified graph, or the original one with the reason it was rejected.

    onnxsim's own random-input check is off (check_n=0) and no input shape is overwritten, since that
    would fix the batch size."""
    import onnxsim

    info: dict = {"applied": False, "nodes_before": len(proto.graph.node)}
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


def rejected_by_check(info: dict) -> dict:
    """The simplification record of artifacts made from the unsimplified graph because an artifact failed its
    check, the simplified fp32 graph failed the fp32 check and the unsimplified one passed it."""
    return {**info, "applied": False,
            "rejected": "an artifact failed its parity check, and the simplified graph failed the fp32 parity "
                        "check that the unsimplified graph passed"}
