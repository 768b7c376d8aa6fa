"""fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs, keeping numerically fragile nodes in fp32.

Two reasons keep a node in fp32, both chosen automatically and listed in the manifest:
- it belongs to a LocalResponseNorm: the exporter decomposes LRN into square -> window sum -> pow/div,
  and x^2 overflows fp16 once |x| > 256 while the sum/pow loses precision (known TensorRT/OpenCV issue);
- its fp32 activations on real photos come within FP16_HEADROOM of the fp16 range (65504), so other
  images could overflow: the producer and every consumer of such a tensor stay fp32.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..backends.onnxruntime import OnnxRuntimeRunner
from ..data import load_batch, sample_images
from .variant import Source, Variant

FP16_MAX = 65504.0
FP16_HEADROOM = 8.0  # activations above FP16_MAX / 8 on the sample photos count as overflow risks
PROBE_PHOTOS = 4  # photos whose activation peaks find fp16 overflow risks; more only cost time


def convert(source: Source, path) -> Variant:
    """The fp16 variant (precisions.py's converter): the overflow probe reads the fp32 artifact's bytes when this
    export has them, and the graph is converted in place when nothing needs it afterwards."""
    probe = load_batch(sample_images()[:PROBE_PHOTOS], source.spec.preprocess)
    proto, details = source.stage("converting to fp16", "fp16", to_fp16, source.graph, probe, source.lrn,
                                  source.fp32_bytes, in_place=source.last)
    return Variant(proto, details)


def activation_peaks(proto: onnx.ModelProto, batch: np.ndarray, serialized: bytes | None = None) -> dict[str, float]:
    """max |value| of every float tensor computed by the graph, over the images of `batch`. `serialized`: the
    graph's bytes when the caller has them (the fp32 artifact's), which saves serializing it again."""
    typed = proto if proto.graph.value_info else onnx.shape_inference.infer_shapes(proto)  # onnxsim keeps types
    float_types = {vi.name for vi in (*typed.graph.value_info, *typed.graph.output)
                   if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    existing = {o.name for o in proto.graph.output}
    added = [onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)
             for node in proto.graph.node for out in node.output if out in float_types and out not in existing]
    # Protobuf merges concatenated messages, appending repeated fields: the graph's bytes followed by a model
    # holding only the extra graph outputs parse as the graph with every intermediate as an output. The large
    # graph is neither copied nor serialized again for the probe.
    extra = onnx.ModelProto(graph=onnx.GraphProto(output=added)).SerializeToString()
    session = OnnxRuntimeRunner((serialized or proto.SerializeToString()) + extra).session
    output_names = [o.name for o in session.get_outputs()]
    peaks = dict.fromkeys(output_names, 0.0)
    for image in batch:  # one at a time: all intermediates of a VGG at batch 10 would need gigabytes
        values = session.run(None, {session.get_inputs()[0].name: image[None]})
        for name, value in zip(output_names, values):
            peaks[name] = max(peaks[name], float(np.abs(value).max()) if value.size else 0.0)
    return peaks


def overflow_risk_nodes(proto: onnx.ModelProto, batch: np.ndarray,
                        serialized: bytes | None = None) -> dict[str, float]:
    """Nodes that produce or consume a tensor whose peak is too close to the fp16 range -> that peak."""
    peaks = activation_peaks(proto, batch, serialized)
    risky = {name: peak for name, peak in peaks.items() if peak > FP16_MAX / FP16_HEADROOM}
    nodes: dict[str, float] = {}
    for node in proto.graph.node:
        touched = [risky[t] for t in (*node.input, *node.output) if t in risky]
        if touched:
            nodes[node.name] = max(touched)
    return nodes


def to_fp16(proto: onnx.ModelProto, batch: np.ndarray, lrn: list[str], serialized: bytes | None = None,
            in_place: bool = False) -> tuple[onnx.ModelProto, dict]:
    """Convert to fp16 with fp32 graph I/O; returns the model and the list of nodes kept in fp32. `serialized`:
    the fp32 graph's bytes, if the caller has them; `in_place`: `proto` is not needed afterwards and is
    converted itself (a VGG's copy is 0.5 GB)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    present = {node.name for node in proto.graph.node}
    keep = {name: "LocalResponseNorm (x^2 and pow overflow or lose precision in fp16)"
            for name in lrn if name in present}
    for name, peak in overflow_risk_nodes(proto, batch, serialized).items():
        keep.setdefault(name, f"activation peak {peak:.4g} on sample photos is near the fp16 limit {FP16_MAX:g}")
    # onnxsim's output carries value_info for every tensor, so the converter's own shape inference (a full
    # serialisation of the model) is skipped where it is there. Without it the converter edits the model
    # it is given in place, hence the copy when the fp32 graph is still needed.
    work = proto
    if not in_place:
        work = onnx.ModelProto()
        work.CopyFrom(proto)
    converted = convert_float_to_float16(work, keep_io_types=True, node_block_list=sorted(keep),
                                         disable_shape_infer=bool(work.graph.value_info))
    removed = drop_round_trip_casts(converted)
    sort_topologically(converted.graph)
    info = {"fp32_nodes": [{"node": n, "reason": r} for n, r in sorted(keep.items())],
            "fp32_node_count": len(keep), "round_trip_casts_removed": removed,
            "nodes": len(converted.graph.node)}
    return converted, info


def drop_round_trip_casts(model: onnx.ModelProto) -> int:
    """Remove fp32 -> fp16 -> fp32 Cast pairs, in place; returns how many back-casts were removed.

    The converter casts the output of every fp32-kept node to fp16 and back before the next kept node,
    even when both are kept: the value still passes through fp16 and overflows. Consumers of such a
    pair are rewired to the original fp32 tensor, so chains of kept nodes really stay fp32."""
    graph = model.graph
    to_type = {n.name: next((a.i for a in n.attribute if a.name == "to"), None) for n in graph.node}
    producer = {out: n for n in graph.node for out in n.output}
    graph_outputs = {o.name for o in graph.output}
    removed, replace = 0, {}
    for node in list(graph.node):
        if node.op_type != "Cast" or to_type[node.name] != onnx.TensorProto.FLOAT:
            continue
        down = producer.get(node.input[0])
        if down is None or down.op_type != "Cast" or to_type[down.name] != onnx.TensorProto.FLOAT16:
            continue
        original = down.input[0]  # the fp32 tensor before the round trip
        if node.output[0] in graph_outputs:
            node.op_type, node.input[0] = "Identity", original
            del node.attribute[:]
        else:
            replace[node.output[0]] = original
            graph.node.remove(node)
        removed += 1
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in replace:
                node.input[i] = replace[name]
    used = {name for n in graph.node for name in n.input} | graph_outputs
    for node in list(graph.node):  # down-casts whose fp16 value nobody reads any more
        if node.op_type == "Cast" and not any(out in used for out in node.output):
            graph.node.remove(node)
    return removed


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder the nodes, in place, so that each comes after the producers of its inputs, as ONNX requires (the
    checker and TensorRT's parser refuse other orders). The converter appends the Cast of the graph input at the
    end, after its consumers. Nodes already in order keep their order."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at node {waiting[0].name}")
        pending = waiting
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
