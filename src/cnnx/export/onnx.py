"""torch -> ONNX with the current (dynamo) exporter and a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx
import torch
from torch import nn

from ..errors import CnnxError, UsageError
from ..models.registry import ModelSpec

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 20  # torch 2.13's default, and inside TensorRT 10.0's parser range (9-20)
# The dynamo exporter writes opset 18 and newer; for an older request it exports 18 and then runs ONNX's
# version converter, which fails on these graphs (and used to leave an opset-18 file behind a claim of 13).
MIN_OPSET = 18


def check_opset(opset: int) -> None:
    """Refuse an opset the exporter cannot write, before any work."""
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise UsageError(f"opset {opset} is outside what cnnx can export: {MIN_OPSET}..{newest} (torch.onnx's "
                         f"dynamo exporter writes opset {MIN_OPSET} and newer; onnx {onnx.__version__} knows up "
                         f"to {newest})", f"use --opset {DEFAULT_OPSET} (the default; TensorRT 10 parses up to 20)")


def stamp(proto: onnx.ModelProto, model: str, precision: str) -> onnx.ModelProto:
    """Write the model and precision into the graph's metadata (in place), so the manifest beside the file can
    be checked against the graph itself (manifest.bind_to_graph); the artifact's sha256 covers them."""
    from ..manifest import GRAPH_METADATA

    values = {"model": model, "precision": precision}
    kept = [p for p in proto.metadata_props if p.key not in GRAPH_METADATA]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, field in GRAPH_METADATA.items():
        proto.metadata_props.add(key=key, value=values[field])
    return proto


def opset_of(proto: onnx.ModelProto) -> int | None:
    """The default-domain (ai.onnx) opset a graph declares."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress lines to stdout (which would corrupt --json output) and logs
    warnings about torchvision ops that no zoo model uses."""
    exporter_log = logging.getLogger("torch.onnx")
    previous_level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(previous_level)


def torch_to_onnx(model: nn.Module, spec: ModelSpec, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export in eval mode with batch as a symbolic dimension."""
    example = torch.zeros(2, *spec.input_shape)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model.eval(), (example,), dynamo=True, opset_version=opset, external_data=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:
        raise CnnxError(f"torch.onnx.export failed for {spec.name} at opset {opset}: {exc}",
                        "try another --opset, or run with --debug and report the traceback") from exc
    assert program is not None  # None only from the TorchScript exporter, which cnnx does not use (dynamo=True)
    proto = program.model_proto
    if opset_of(proto) != opset:
        raise CnnxError(f"torch.onnx.export wrote opset {opset_of(proto)} for {spec.name}, not the requested {opset}",
                        f"use --opset {DEFAULT_OPSET}, or run with --debug and report this")
    assert_dynamic_batch(proto)  # onnx's checker runs on each artifact's bytes (pipeline), not on this graph
    return proto


def assert_dynamic_batch(proto: onnx.ModelProto) -> None:
    """The exporter has been known to ignore dynamic_shapes; refuse a graph with a fixed batch."""
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.dim_param:
            raise CnnxError(f"exported graph has a fixed batch on '{value.name}' ({dim.dim_value}); "
                            "a dynamic batch axis was requested", "report this with --debug output")

