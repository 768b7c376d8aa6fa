"""torch -> ONNX with the current (dynamo) exporter and a dynamic batch axis."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx
import torch
from torch import nn

from ..errors import CnnxError
from ..models.registry import ModelSpec

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 20  # torch 2.13's default, and inside TensorRT 10.0's parser range (9-20)


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
    """Export in eval mode with batch as a symbolic dimension, checked (with strict shape inference)."""
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
    proto = program.model_proto
    onnx.checker.check_model(proto, full_check=True)  # full_check includes strict shape inference
    assert_dynamic_batch(proto)
    return proto


def assert_dynamic_batch(proto: onnx.ModelProto) -> None:
    """The exporter has been known to ignore dynamic_shapes; refuse a graph with a fixed batch."""
    for value in (*proto.graph.input, *proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.dim_param:
            raise CnnxError(f"exported graph has a fixed batch on '{value.name}' ({dim.dim_value}); "
                            "a dynamic batch axis was requested", "report this with --debug output")

