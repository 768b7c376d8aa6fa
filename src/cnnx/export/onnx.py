"""torch -> ONNX with a dynamic batch axis, by the fastest of torch's exporters that exports the model.

torch has two: the TorchScript exporter (`dynamo=False`), deprecated since torch 2.9 but still shipped, and the
dynamo exporter (`torch.export` + onnxscript), the one torch develops. For these CNNs both give the same graph
after onnxsim (ResNet-50: 122 nodes either way, identical parity), and the TorchScript exporter takes a seventh
of the time (ResNet-50 0.7 s against 5.0 s on 2 cores; docs/results/export_speed.md). So `exporter="auto"` (the
default) tries it first and falls back to dynamo where it fails (AlexNet and VGG: TorchScript cannot export
their adaptive pooling with a dynamic batch) or where a later torch has dropped it. The manifest records which
exporter wrote the graph and why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field

import onnx
import torch
from torch import nn

from ..errors import CnnxError, UsageError, first_line
from ..models.registry import ModelSpec
from . import EXPORTERS

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 20  # torch 2.13's default, and inside TensorRT 10.0's parser range (9-20)
# The dynamo exporter writes opset 18 and newer; for an older request it exports 18 and then runs ONNX's
# version converter, which fails on these graphs (and used to leave an opset-18 file behind a claim of 13).
MIN_OPSET = 18


def check_exporter(exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter '{exporter}'", f"choose from {', '.join(EXPORTERS)}")


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
    for key, attribute in GRAPH_METADATA.items():
        proto.metadata_props.add(key=key, value=values[attribute])
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


@dataclass
class Exported:
    """An exported graph, which exporter wrote it, and the nodes that came from nn.LocalResponseNorm (fp16 keeps
    them in fp32; onnxsim drops what marks them, so they are found here)."""

    proto: onnx.ModelProto
    exporter: dict  # {"name": "torchscript" | "dynamo", "asked": ..., and why it fell back, if it did}
    lrn: list[str] = field(default_factory=list)


def torch_to_onnx(model: nn.Module, spec: ModelSpec, opset: int = DEFAULT_OPSET, exporter: str = "auto") -> Exported:
    """Export in eval mode with batch as a symbolic dimension (see the module doc for `exporter`)."""
    check_exporter(exporter)
    model = model.eval()
    fallback = None
    if exporter in ("auto", "torchscript"):
        try:
            proto = _torchscript(model, spec, opset)
            return Exported(_checked(proto, spec, opset), {"name": "torchscript", "asked": exporter},
                            _torchscript_lrn(model, proto))
        except Exception as exc:
            if exporter == "torchscript":
                raise CnnxError(f"the TorchScript exporter failed for {spec.name} at opset {opset}: "
                                f"{first_line(exc)}", "leave --exporter at auto (the dynamo exporter takes over)"
                                ) from exc
            fallback = f"TorchScript exporter: {first_line(exc)}"
    proto = _dynamo(model, spec, opset)
    record = {"name": "dynamo", "asked": exporter, **({"fallback_because": fallback} if fallback else {})}
    return Exported(_checked(proto, spec, opset), record, _dynamo_lrn(proto))


def _dynamo(model: nn.Module, spec: ModelSpec, opset: int) -> onnx.ModelProto:
    example = torch.zeros(2, *spec.input_shape)
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, external_data=False,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:
        raise CnnxError(f"torch.onnx.export failed for {spec.name} at opset {opset}: {exc}",
                        "try another --opset, or run with --debug and report the traceback") from exc
    assert program is not None  # dynamo=True always returns an ONNXProgram
    return program.model_proto


def _torchscript(model: nn.Module, spec: ModelSpec, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with _quiet_stdout_fd(), _quiet_exporter():  # flush the real stdout before fd 1 goes to devnull
        # a file object: the TorchScript exporter writes to it (torch's annotation names paths only)
        torch.onnx.export(model, (torch.zeros(2, *spec.input_shape),), buffer,  # type: ignore[arg-type]
                          dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


@contextlib.contextmanager
def _quiet_stdout_fd():
    """The TorchScript exporter's C++ side writes the whole TorchScript graph to file descriptor 1 when it fails
    (before cnnx falls back to dynamo): keep it off stdout, where it would corrupt --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def torchscript_scope(module_path: str) -> str:
    """The prefix of the TorchScript exporter's node names for the nodes of the submodule at `module_path`:
    "/lrn1/" for `lrn1`, "/features/features.2/" for `features.2`, "/layer1/layer1.0/conv1/" for
    `layer1.0.conv1` (an indexed child is named after its container too)."""
    parts = module_path.split(".")
    scope = [f"{parts[i - 1]}.{part}" if part.isdigit() and i else part for i, part in enumerate(parts)]
    return "/" + "/".join(scope) + "/"


def _dynamo_lrn(proto: onnx.ModelProto) -> list[str]:
    """The dynamo exporter records each node's module classes in its metadata."""
    return [node.name for node in proto.graph.node
            if any("LocalResponseNorm" in prop.value for prop in node.metadata_props)]


def _torchscript_lrn(model: nn.Module, proto: onnx.ModelProto) -> list[str]:
    """The TorchScript exporter names each node after the module path it came from."""
    scopes = tuple(torchscript_scope(name) for name, module in model.named_modules()
                   if isinstance(module, nn.LocalResponseNorm))
    return [node.name for node in proto.graph.node if scopes and node.name.startswith(scopes)]


def constants_as_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Every Constant node that holds a tensor becomes an initializer of the same name (in place): the same
    graph, but the converters and quantizers find every weight among the initializers. (The TorchScript exporter
    and onnxsim leave some folded weights as Constant nodes, e.g. in Inception-ResNet-v1's repeated blocks.)"""
    graph = proto.graph
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    if len(kept) < len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return proto


def _checked(proto: onnx.ModelProto, spec: ModelSpec, opset: int) -> onnx.ModelProto:
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

