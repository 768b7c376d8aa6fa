"""The tensorrt Q/DQ form: Q/DQ nodes placed by NVIDIA's rules for TensorRT's explicit quantization.

Sources: TensorRT developer guide, "Working with Quantized Types", section "Q/DQ Layer-Placement
Recommendations" (docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
quantized-types-explicit-quantization.html), and what NVIDIA's own ONNX quantizer, ModelOpt
(modelopt/onnx/quantization), does with the same graphs. The rules, as `place` applies them:

1. Weighted layers (Conv, Gemm, MatMul): "Quantize all inputs of weighted-operations": the activation input
   per tensor, the weights per output channel (stored as int8; biases stay float).
2. "By default, do not quantize the outputs of weighted-operations": no Q/DQ on a layer's output for its own
   sake, so TensorRT fuses conv + bias + ReLU and picks the output precision from what follows.
3. Residual Add: "Quantize the residual input in skip-connections": TensorRT fuses the Add into the conv of
   the branch, and "the precision of the first input to the element-wise addition layer determines the
   precision of the output of the fusion", so the skip input is int8 and the branch input is left float (the
   conv's own output). The skip is the input on the shorter path from the Add back to where the two paths
   meet (ModelOpt decides the same way): the block input in identity blocks, the downsample conv's output in
   downsampling blocks (Inception-ResNet: the block input; its branch carries the residual scale).
4. Concat: not quantized itself. A Q after it (put there by its consumers) is one scale for every input:
   TensorRT moves Q across a Concat to its inputs ("quantization as early as possible"), which needs equal
   scales, so per-input Q/DQ with scales of their own would only cost re-quantization.
5. Pooling: MaxPool commutes with Q and DQ, and both MaxPool and AveragePool have int8 kernels ("quantizable"
   layers, which TensorRT runs in int8 between a DQ and a Q). When a reader of a pool's output reads it
   quantized, the pool's input is quantized too, so it runs between quantized tensors (ModelOpt quantizes a
   pool next to a quantized neighbour the same way); unless a layer kept in float reads it. A MaxPool between
   quantized tensors keeps its input's scale for its output (ONNX Runtime's and ModelOpt's placement share it
   too): its maxima are values of the input's grid, so the Q after it is exact, where a range of its own (a
   clipping calibration gives one) would round every value again.
6. The classifier (the last weighted layer, whose output is the logits) is quantized or kept float by
   measurement (int8.py); for a batch-1 GEMV TensorRT gains nothing from int8 (ModelOpt keeps it float for
   that reason), and float logits keep the most accuracy.
Activations are symmetric int8 with zero point 0 (TensorRT's only int8 form), per tensor; weights per channel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
POOLS = ("MaxPool", "AveragePool")  # rule 5: int8 kernels in TensorRT; MaxPool commutes with Q/DQ
INT8_MAX = 127.0


def _constant_names(proto: onnx.ModelProto) -> set[str]:
    return {i.name for i in proto.graph.initializer} | {o for n in proto.graph.node if n.op_type == "Constant"
                                                         for o in n.output}


def weighted_layers(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv/Gemm/MatMul nodes with constant weights: what int8 quantizes."""
    constants = _constant_names(proto)
    return [n for n in proto.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in constants]


def classifier_layer(proto: onnx.ModelProto) -> str | None:
    """The weighted layer whose output is the logits (through Flatten/Reshape/Identity at most), if any."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    node = producers.get(proto.graph.output[0].name)
    while node is not None and node.op_type in ("Flatten", "Reshape", "Identity", "Squeeze"):
        node = producers.get(node.input[0])
    return node.name if node is not None and node.op_type in WEIGHTED_OPS else None


def _ancestors(tensor: str, producers: dict[str, onnx.NodeProto], constants: set[str]) -> dict[str, int]:
    """Every tensor `tensor` is computed from -> the fewest nodes between them (0 for itself)."""
    distance = {tensor: 0}
    frontier = [tensor]
    while frontier:
        following = []
        for t in frontier:
            node = producers.get(t)
            for source in node.input if node is not None else ():
                if source and source not in constants and source not in distance:
                    distance[source] = distance[t] + 1
                    following.append(source)
        frontier = following
    return distance


def residual_skip_inputs(proto: onnx.ModelProto) -> dict[str, int]:
    """Residual Add -> the index of its skip input (rule 3). An Add whose two paths back to their meeting point
    are equally long has no skip (nothing to tell the branch from) and is left out."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    constants = _constant_names(proto)
    skips = {}
    for node in proto.graph.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(i in constants for i in node.input):
            continue
        a, b = (_ancestors(i, producers, constants) for i in node.input)
        common = set(a) & set(b)
        if not common:
            continue
        meet = min(common, key=lambda t: (a[t] + b[t], t))
        if a[meet] != b[meet]:
            skips[node.name] = 0 if a[meet] < b[meet] else 1
    return skips


def quantized_edges(proto: onnx.ModelProto, float_layers: Iterable[str] = ()) -> set[tuple[str, int]]:
    """(node, input index) of every input that reads its tensor through Q/DQ, by rules 1, 3 and 5."""
    floats = set(float_layers)
    edges = {(n.name, 0) for n in weighted_layers(proto) if n.name not in floats}
    edges |= {(add, index) for add, index in residual_skip_inputs(proto).items()}
    consumers = defaultdict(list)
    for node in proto.graph.node:
        for index, name in enumerate(node.input):
            consumers[name].append((node.name, index))
    graph_outputs = {o.name for o in proto.graph.output}
    changed = True
    while changed:  # a pool feeding a pool: repeat until nothing more joins
        changed = False
        for node in proto.graph.node:
            readers = consumers[node.output[0]] if node.op_type in POOLS else []
            # not behind a float layer: MaxPool commutes with Q/DQ, so that layer would read quantized values
            if (node.output[0] not in graph_outputs and (node.name, 0) not in edges
                    and any(reader in edges for reader in readers)
                    and not any(name in floats for name, _ in readers)):
                edges.add((node.name, 0))
                changed = True
    return edges


def _per_channel(weights: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 weights and their per-channel scales along `axis`."""
    moved = np.moveaxis(weights.astype(np.float64), axis, 0)
    peak = np.abs(moved.reshape(len(moved), -1)).max(axis=1)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0)
    shape = (-1,) + (1,) * (moved.ndim - 1)
    quantized = np.clip(np.round(moved / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return np.moveaxis(quantized, 0, axis), scale.astype(np.float32)


def per_channel_dequantized(weights: np.ndarray, axis: int) -> np.ndarray:
    """The weights as their int8 Q/DQ in the graph gives them back (float64, the stored layout)."""
    quantized, scales = _per_channel(weights, axis)
    shape = [1] * weights.ndim
    shape[axis] = -1
    return quantized.astype(np.float64) * scales.astype(np.float64).reshape(shape)


def weight_axis(node: onnx.NodeProto) -> int:
    """The output-channel axis of a layer's weights: Conv [out, in, kh, kw] 0; Gemm [in, out] 1 unless transB;
    MatMul [in, out] 1."""
    if node.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
    return 0 if node.op_type == "Conv" else 1


def pooled_ranges(fp32: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                  edges: set[tuple[str, int]] | None = None) -> dict[str, tuple[float, float]]:
    """`ranges` with each MaxPool's output range set to its input's (rule 5) where its input is quantized (every
    MaxPool whose input has a range when `edges` is None): the ranges its quantized readers see."""
    pooled = dict(ranges)
    for node in fp32.graph.node:  # in graph order: a MaxPool after a MaxPool inherits the first one's range
        if (node.op_type == "MaxPool" and node.input[0] in pooled
                and (edges is None or (node.name, 0) in edges)):
            pooled[node.output[0]] = pooled[node.input[0]]
    return pooled


def place(fp32: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
          float_layers: Iterable[str] = ()) -> onnx.ModelProto:
    """A copy of `fp32` with Q/DQ on its quantized edges (activation scales from the calibrated `ranges`, symmetric)
    and int8 per-channel weights on its quantized layers; `float_layers` (node names) stay float."""
    floats = set(float_layers)
    edges = quantized_edges(fp32, floats)
    layers = {n.name: n for n in weighted_layers(fp32) if n.name not in floats}
    ranges = pooled_ranges(fp32, ranges, edges)
    initializers = {i.name: i for i in fp32.graph.initializer}
    proto = onnx.ModelProto()
    proto.CopyFrom(fp32)
    graph = proto.graph
    del graph.node[:]
    new_inits: list[TensorProto] = []
    dequantized: dict[str, str] = {}  # tensor -> the output of its DequantizeLinear
    replaced: set[str] = set()  # float weights now read as int8
    zero = "cnnx_qdq_zero_point"
    new_inits.append(numpy_helper.from_array(np.array(0, np.int8), zero))

    def activation(tensor: str) -> list[onnx.NodeProto]:
        """Q/DQ nodes for an activation tensor (once per tensor, shared by every quantized reader)."""
        if tensor in dequantized:
            return []
        lo, hi = ranges[tensor]
        scale = np.float32(max(abs(lo), abs(hi)) / INT8_MAX or 1.0)
        base = f"{tensor}_qdq"
        new_inits.append(numpy_helper.from_array(np.array(scale, np.float32), f"{base}_scale"))
        dequantized[tensor] = f"{base}_dequantized"
        return [helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", zero], [f"{base}_quantized"],
                                 name=f"{base}_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [f"{base}_quantized", f"{base}_scale", zero],
                                 [dequantized[tensor]], name=f"{base}_DequantizeLinear")]

    def weight(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        name = node.input[1]
        if name in dequantized:
            return []
        axis = weight_axis(node)
        quantized, scales = _per_channel(numpy_helper.to_array(initializers[name]), axis)
        base = f"{name}_qdq"
        new_inits.extend([numpy_helper.from_array(quantized, f"{base}_int8"),
                          numpy_helper.from_array(scales, f"{base}_scale"),
                          numpy_helper.from_array(np.zeros(len(scales), np.int8), f"{base}_zero_point")])
        dequantized[name] = f"{base}_dequantized"
        replaced.add(name)
        return [helper.make_node("DequantizeLinear", [f"{base}_int8", f"{base}_scale", f"{base}_zero_point"],
                                 [dequantized[name]], name=f"{base}_DequantizeLinear", axis=axis)]

    for original in fp32.graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for index, tensor in enumerate(node.input):
            if (node.name, index) in edges and tensor in ranges:
                graph.node.extend(activation(tensor))
                node.input[index] = dequantized[tensor]
        if node.name in layers and node.input[1] in initializers:
            graph.node.extend(weight(node))
            node.input[1] = dequantized[node.input[1]]
        graph.node.append(node)
    still_read = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name not in replaced or i.name in still_read]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    return proto


def placement_summary(proto: onnx.ModelProto) -> dict:
    """What a placement review counts on a quantized graph: per op type, how its inputs are quantized."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    constants = _constant_names(proto)

    def quantized(tensor: str) -> bool:
        source = producers.get(tensor)
        return source is not None and source.op_type == "DequantizeLinear" and source.input[0] not in constants

    adds = [n for n in proto.graph.node if n.op_type == "Add" and not any(i in constants for i in n.input)]
    concats = [n for n in proto.graph.node if n.op_type == "Concat"]
    pools = [n for n in proto.graph.node if n.op_type in POOLS]
    layers = {n.name: n for n in proto.graph.node if n.op_type in WEIGHTED_OPS}
    classifier = classifier_layer(proto)
    return {
        "weighted_layers": len(layers),
        "weighted_layers_int8": sum(quantized(n.input[0]) for n in layers.values()),
        "residual_adds": len(adds),
        "residual_adds_one_input_quantized": sum(sum(map(quantized, n.input)) == 1 for n in adds),
        "residual_adds_no_input_quantized": sum(not any(map(quantized, n.input)) for n in adds),
        "concats": len(concats),
        "concat_inputs_quantized": sum(quantized(i) for n in concats for i in n.input),
        "pools": len(pools), "pool_inputs_quantized": sum(quantized(n.input[0]) for n in pools),
        "classifier": None if classifier is None else {
            "node": classifier, "int8": quantized(layers[classifier].input[0])},
    }
