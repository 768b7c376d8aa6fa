"""NVIDIA's Q/DQ placement rules for TensorRT (src/cnnx/export/qdq_tensorrt.py states them with their sources),
checked on a quantized graph independently of how cnnx placed them; used by the int8 and the whole-zoo tests."""

from __future__ import annotations

import onnx
from onnx import numpy_helper


def assert_nvidia_placement(proto: onnx.ModelProto, details: dict) -> None:
    """The rules of qdq_tensorrt.py checked on a quantized graph, independently of how it was placed."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    constants = {i.name for i in proto.graph.initializer} | {o for n in proto.graph.node if n.op_type == "Constant"
                                                             for o in n.output}

    def quantized(tensor: str) -> bool:
        source = producers.get(tensor)
        return source is not None and source.op_type == "DequantizeLinear" and source.input[0] not in constants

    values = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}

    def scale(qdq: onnx.NodeProto) -> float:
        return float(values[qdq.input[1]])

    floats = set(details["float_layers"]["nodes"])
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.name not in floats:
            assert quantized(node.input[0]), f"{node.name}: weighted layer's input not quantized"
            assert producers[node.input[1]].op_type == "DequantizeLinear", f"{node.name}: float weights"
        if node.op_type == "Add" and not any(i in constants for i in node.input):
            kinds = [quantized(i) for i in node.input]
            assert sorted(kinds) == [False, True], f"{node.name}: residual Add inputs quantized {kinds}"
            branch = producers[node.input[kinds.index(False)]]
            while branch.op_type in ("Mul", "Relu"):  # Inception-ResNet scales its branch before the Add
                branch = producers[next(i for i in branch.input if i not in constants)]
            assert branch.op_type == "Conv", f"{node.name}: float input from {branch.op_type}, not a conv branch"
        if node.op_type == "Concat":
            assert not any(quantized(i) for i in node.input), f"{node.name}: per-input Q/DQ on a Concat"
        if node.op_type in ("MaxPool", "AveragePool"):  # its output read quantized: it runs in int8
            after = [r for r in readers.get(node.output[0], []) if r.op_type == "QuantizeLinear"]
            if after:
                assert quantized(node.input[0]), f"{node.name}: {node.op_type} before a Q reads float"
            if after and node.op_type == "MaxPool":  # its maxima are on the input's grid: one scale, no re-rounding
                assert scale(after[0]) == scale(producers[node.input[0]]), f"{node.name}: requantized"
        if node.op_type == "QuantizeLinear" and node.input[0] in producers:
            source = producers[node.input[0]]
            if source.op_type in ("Conv", "Gemm", "MatMul"):  # a layer's output: only as a residual skip
                dq = readers[node.output[0]][0]
                assert all(r.op_type == "Add" for r in readers[dq.output[0]]), f"{source.name}'s output quantized"
    classifier = details["classifier"]
    if classifier:
        layer = next(n for n in proto.graph.node if n.name == classifier["node"])
        assert quantized(layer.input[0]) == (classifier["precision"] == "int8")
