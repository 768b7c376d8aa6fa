"""fp32 ONNX -> INT8 Q/DQ ONNX with ONNX Runtime's static quantizer, a calibration cache and an accuracy rescue.

Two Q/DQ forms (`target`):
- "tensorrt": what TensorRT's explicit-quantization parser accepts (shared/reference/tensorrt.md 4.7, 5.3):
  int8 activations and weights, all zero points 0 (symmetric), per-channel weights on axis 0 (output
  channels), biases left in float (no int32 bias DequantizeLinear). Placement follows NVIDIA's guidance for
  TensorRT: Q/DQ on the inputs of the weighted layers (Conv/Gemm/MatMul), not on their outputs (ORT's
  OpTypesToExcludeOutputQuantization, which its own quantizer recommends for TensorRT), so the logits leave
  the last Gemm in float and TensorRT fuses conv+ReLU in int8; and residual Add/Mul are not quantized, so a
  skip connection's input keeps the Q/DQ its other consumer (the next block's first conv) puts on it while
  the conv branch's output enters the Add unquantized, which lets TensorRT fuse conv+add. ORT's quantizer
  cannot put Q/DQ on one Add input only, so in blocks whose skip path is itself a conv (downsampling) both
  Add inputs stay float.
- "cpu": ONNX Runtime's fast x86 path (VNNI/AMX): uint8 asymmetric activations, int8 symmetric per-channel
  weights, int32 biases.

Calibration ranges are measured once per (model, weights, calibration tensors, method, target, size,
opset, simplification) and stored as ONNX Runtime's own JSON calibration cache under
`<out>/.calibration/<key>.json`; quantize_static reads it back (calibration_cache_path), so later exports
and every trial of the rescue skip calibration.

Rescue (`exclude="auto"`): quantize everything, then rank the Conv/Gemm/MatMul nodes by the quantization
noise each one causes in isolation (noise-to-signal ratio of its Q/DQ'd input activation, with the
calibrated range, plus that of its Q/DQ'd per-channel weights, on the fp32 activations of a few
calibration tensors: one pass of the fp32 graph instead of one re-quantization per node), and keep the
worst ones in float - 1, 2, 4, ... of them, then bisect - until the logits SQNR on those calibration
tensors reaches the target, with at most RESCUE_MAX_SHARE of the nodes in float. If the target is out of
reach, only trials leaving at most RESCUE_MAX_MAC_SHARE of the multiply-accumulates in float count, and the fewest
float layers that come within 0.5 dB of the best trial are kept, and none at all unless they gain at least
RESCUE_MIN_GAIN_DB: float layers cost speed, so they must pay for themselves.
The accuracy reported in the manifest is always measured on held-out photos, never on calibration data.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from .. import parity
from ..artifacts import atomic_path, scratch_path, tool_versions
from ..backends.onnxruntime import OnnxRuntimeRunner
from ..backends.torch import TorchRunner
from ..errors import UsageError
from ..hold import hold_point
from ..precisions import CALIBRATION_METHODS, DEFAULT_Q_DQ_FORM, Q_DQ_FORMS
from ..reference import CheckData, CheckResult
from .calibration import CalibrationSet
from .variant import Source, Variant

TARGET_SQNR_DB = 30.0
RESCUE_MAX_SHARE = 0.25  # at most this share of the quantizable nodes is kept in float
RESCUE_MAX_MAC_SHARE = 0.3  # a rescue that misses the target may leave at most this share of MACs in float
RESCUE_MIN_GAIN_DB = 1.0  # below the target, float layers must buy at least this much SQNR to be kept
RESCUE_PROBE = 8  # calibration tensors used to rank layers and to judge rescue trials
CACHE_DIR = ".calibration"
CACHE_FORMAT = "cnnx-int8-calibration/1"
CALIB_BATCH = 4  # tensors per calibration inference (memory of all intermediates stays bounded)
LAYER_OPS = ("Conv", "Gemm", "MatMul")
TENSORRT_FLOAT_OPS = ("Add", "Mul")  # residual arithmetic: left to TensorRT's conv+add fusion (see the docstring)


def _ort():
    from onnxruntime import quantization as q

    return q


def method_enum(method: str):
    q = _ort()
    return {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile}[method]


def target_options(target: str) -> dict:
    """quantize_static keyword arguments of a Q/DQ form."""
    q = _ort()
    common = {"quant_format": q.QuantFormat.QDQ, "per_channel": True, "weight_type": q.QuantType.QInt8}
    if target == "tensorrt":
        return {**common, "activation_type": q.QuantType.QInt8,
                "op_types_to_quantize": sorted(set(_op_types()) - set(TENSORRT_FLOAT_OPS)), "extra_options": {
                    "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
                    "DedicatedQDQPair": False, "QDQDisableWeightAdjustForInt32Bias": True,
                    "OpTypesToExcludeOutputQuantization": list(LAYER_OPS)}}
    return {**common, "activation_type": q.QuantType.QUInt8, "extra_options": {
        "ActivationSymmetric": False, "WeightSymmetric": True,
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1}}}


def validate_options(method: str, target: str, exclude) -> None:
    if method not in CALIBRATION_METHODS:
        raise UsageError(f"unknown calibration method '{method}'", f"choose from {', '.join(CALIBRATION_METHODS)}")
    if target not in Q_DQ_FORMS:
        raise UsageError(f"unknown INT8 target '{target}'", f"choose from {', '.join(Q_DQ_FORMS)}")
    if exclude is not None and exclude != "auto" and (
            isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude)):
        raise UsageError(f"int8 exclusions must be 'auto' or a list of node names, not {exclude!r}")


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints progress to stdout (would corrupt --json) and logs warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class _Reader:
    """CalibrationDataReader over a slice of preprocessed tensors, CALIB_BATCH at a time."""

    def __init__(self, input_name: str, tensors: np.ndarray):
        self.batches = [{input_name: tensors[i:i + CALIB_BATCH]} for i in range(0, len(tensors), CALIB_BATCH)]
        self.index = 0

    def get_next(self):
        if self.index >= len(self.batches):
            return None
        self.index += 1
        return self.batches[self.index - 1]

    def __len__(self):
        return len(self.batches)


def _op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def calibrate(fp32_path: Path, calib: CalibrationSet, method: str, target: str, cache_path: Path,
              input_name: str) -> float:
    """Measure the tensor ranges on the calibration tensors and store them as ORT's calibration cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    start = time.perf_counter()
    symmetric = target == "tensorrt"
    with _quiet(), tempfile.TemporaryDirectory(prefix="cnnx-calib-") as tmp:
        calibrator = create_calibrator(Path(fp32_path), _op_types(),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method_enum(method),
                                       extra_options={"symmetric": symmetric})
        # One collect per chunk: MinMax merges ranges and the histogram methods merge histograms, so
        # the intermediates of only CALIB_BATCH tensors are held at a time.
        for i in range(0, len(calib.tensors), CALIB_BATCH):
            calibrator.collect_data(_Reader(input_name, calib.tensors[i:i + CALIB_BATCH]))
        ranges = calibrator.compute_data()
        del calibrator
    with atomic_path(cache_path) as tmp:  # a killed run never leaves half a cache behind
        save_tensors_data(ranges, tmp)
    return round(time.perf_counter() - start, 3)


def cache_problem(cache_path: Path, fp32: onnx.ModelProto) -> str | None:
    """Why a calibration cache file cannot be used for this graph (None: it can): unreadable, empty, or naming
    tensors the graph does not have (a cache of another model or export put in its place)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    try:
        ranges = load_tensors_data(cache_path).data
    except Exception as exc:  # ORT raises JSON, key and type errors for a damaged file
        return f"is not a readable calibration cache ({exc.__class__.__name__})"
    tensors = {i.name for i in fp32.graph.input} | {o for n in fp32.graph.node for o in n.output}
    unknown = sorted(set(ranges) - tensors)
    if not ranges or unknown:
        return f"does not fit this graph ({len(unknown)} unknown tensors, e.g. {unknown[:3]})" if unknown \
            else "is empty"
    return None


def quantize(fp32_path: Path, out_path: Path, cache_path: Path, method: str, target: str,
             exclude: list[str]) -> None:
    """One quantize_static call reading the ranges from the calibration cache (no calibration inference)."""
    q = _ort()
    with _quiet():
        q.quantize_static(str(fp32_path), str(out_path), None, calibrate_method=method_enum(method),
                          nodes_to_exclude=list(exclude), calibration_cache_path=str(cache_path),
                          **target_options(target))


def layer_macs(proto: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates per Conv/Gemm/MatMul node at batch 1, from the graph's inferred shapes."""
    if not proto.graph.value_info:
        proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in (*proto.graph.value_info, *proto.graph.output)}
    weights = {init.name: list(init.dims) for init in proto.graph.initializer}
    macs = {}
    for node in proto.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2 or node.input[1] not in weights:
            continue
        w = weights[node.input[1]]
        out = shapes.get(node.output[0], [])
        spatial = int(np.prod(out[2:])) if node.op_type == "Conv" and len(out) > 2 else 1
        macs[node.name] = int(np.prod(w)) * spatial
    return macs


def qdq_summary(proto: onnx.ModelProto) -> dict:
    """Counts and types of the Q/DQ nodes of a quantized graph (what a TensorRT parser would look at)."""
    inits = {i.name: i for i in proto.graph.initializer}
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    zero_point_types, nonzero = set(), 0
    for node in proto.graph.node:
        if node.op_type in counts:
            counts[node.op_type] += 1
            if len(node.input) > 2 and node.input[2] in inits:
                zp = onnx.numpy_helper.to_array(inits[node.input[2]])
                zero_point_types.add(str(zp.dtype))
                nonzero += int(np.count_nonzero(zp))
    return {"quantize_nodes": counts["QuantizeLinear"], "dequantize_nodes": counts["DequantizeLinear"],
            "zero_point_types": sorted(zero_point_types), "nonzero_zero_points": nonzero,
            "nodes": len(proto.graph.node)}


def _with_outputs(proto: onnx.ModelProto, names: list[str]) -> bytes:
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return probe.SerializeToString()


def _fake_quant(x: np.ndarray, lo: float, hi: float, target: str, axis: int | None = None) -> np.ndarray:
    """x through quantize -> dequantize as the target's Q/DQ form does it (symmetric int8, or uint8)."""
    if target == "tensorrt" or axis is not None:
        scale = np.maximum(np.maximum(np.abs(lo), np.abs(hi)) / 127.0, 1e-12)
        return np.clip(np.round(x / scale), -127, 127) * scale
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255.0, 1e-12)
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def layer_noise(fp32: onnx.ModelProto, cache_path: Path, target: str, probe: np.ndarray) -> dict[str, float]:
    """Quantization noise of each Conv/Gemm/MatMul node in isolation: the noise-to-signal ratio of its
    Q/DQ'd input activation (with the calibrated range, on the fp32 activations of the probe tensors)
    plus that of its per-channel Q/DQ'd weights. A node whose input has outliers that stretch its range,
    or whose weights have outlier channels, scores high; one pass of the fp32 graph ranks all nodes."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    ranges = {name: tuple(float(v) for v in np.ravel(np.asarray(data.range_value)))
              for name, data in load_tensors_data(cache_path).data.items()}
    inits = {i.name: i for i in fp32.graph.initializer}
    layers = [n for n in fp32.graph.node if n.op_type in LAYER_OPS]
    inputs = sorted({n.input[0] for n in layers if n.input[0] in ranges})
    graph_inputs = {i.name for i in fp32.graph.input}
    session = OnnxRuntimeRunner(_with_outputs(fp32, [t for t in inputs if t not in graph_inputs])).session
    names = [o.name for o in session.get_outputs()]
    noise, signal = dict.fromkeys(inputs, 0.0), dict.fromkeys(inputs, 0.0)
    for image in probe:
        values = dict(zip(names, session.run(None, {session.get_inputs()[0].name: image[None]})))
        values.update({i: image[None] for i in graph_inputs})
        for t in inputs:
            x = values[t].astype(np.float64)
            noise[t] += float(((x - _fake_quant(x, *ranges[t][:2], target)) ** 2).sum())
            signal[t] += float((x ** 2).sum())
    scores = {}
    for node in layers:
        act = noise.get(node.input[0], 0.0) / signal[node.input[0]] if signal.get(node.input[0]) else 0.0
        wq = 0.0
        if len(node.input) > 1 and node.input[1] in inits:
            w = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            rows = w if node.op_type == "Conv" or trans_b else w.T  # output channels first
            flat = rows.reshape(len(rows), -1)
            peak = np.abs(flat).max(axis=1, keepdims=True)
            error = ((flat - _fake_quant(flat, -peak, peak, target, axis=0)) ** 2).sum()
            wq = float(error / max((flat ** 2).sum(), 1e-30))
        scores[node.name] = act + wq
    return scores


# Ops between a layer and the layer that feeds it that keep the activation's quantization (no new Q/DQ).
_PASS_THROUGH = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape", "Identity")


def with_producers(fp32: onnx.ModelProto, ranked: list[tuple[str, float]]) -> list[str]:
    """The nodes to keep in float for the chosen layers. In the cpu form ONNX Runtime quantizes a tensor when
    its producer is quantized, so excluding only a layer leaves its input Q/DQ'd: the layer that produces that
    input (through ReLU/pooling) is kept in float too, otherwise an outlier-stretched activation stays
    quantized. (The tensorrt form puts no Q/DQ on layer outputs, so there the layer alone would do; the same
    rule is applied to both forms.)"""
    producer = {out: node for node in fp32.graph.node for out in node.output}
    chosen: list[str] = []
    for name, _ in ranked:
        node = next(n for n in fp32.graph.node if n.name == name)
        chosen.append(name)
        upstream = producer.get(node.input[0])
        while upstream is not None and upstream.op_type in _PASS_THROUGH:
            upstream = producer.get(upstream.input[0])
        if upstream is not None and upstream.op_type in LAYER_OPS:
            chosen.append(upstream.name)
    return list(dict.fromkeys(chosen))


def _sqnr(session_or_path, probe: np.ndarray, reference: np.ndarray) -> float:
    runner = OnnxRuntimeRunner(session_or_path)
    sqnr = parity.compare(reference, runner(probe))["sqnr_db"]
    return float("-inf") if sqnr is None else sqnr  # None: NaN/Inf outputs, the worst possible trial


def check_exclude(fp32: onnx.ModelProto, exclude: list[str]) -> None:
    names = [n.name for n in fp32.graph.node]
    unknown = [n for n in exclude if n not in set(names)]
    if unknown:
        layers = [n.name for n in fp32.graph.node if n.op_type in LAYER_OPS]
        close = sorted({m for u in unknown for m in difflib.get_close_matches(u, names, n=3)})
        raise UsageError(f"no node named {', '.join(repr(u) for u in unknown)} in the graph to quantize",
                         (f"did you mean {', '.join(close)}? " if close else "")
                         + f"quantizable layers are e.g. {', '.join(layers[:5])} (see the int8 manifest's "
                           "'layers' or use --int8-exclude auto)")


def build_int8(fp32_path: Path, fp32: onnx.ModelProto, out_path: Path, *, calib: CalibrationSet,
               holdout_expected: np.ndarray, method: str, target: str, exclude, cache_dir: Path,
               key_parts: dict, recalibrate: bool = False, input_name: str = "images",
               target_sqnr_db: float = TARGET_SQNR_DB, progress=lambda stage: None) -> tuple[dict, onnx.ModelProto]:
    """Calibrate (or reuse the cache), quantize `fp32_path` into `out_path`, rescue if asked; returns the
    manifest's precision details (calibration, Q/DQ form, float layers, timings; the held-out accuracy is
    filled in by record_accuracy) and the quantized graph."""
    timings = {}
    parts = {"format": CACHE_FORMAT, **key_parts, "calibration_sha256": calib.sha256, "method": method,
             "target": target, "calib_size": len(calib.tensors)}
    key = cache_key(**parts)
    cache_path = Path(cache_dir) / f"{key}.json"
    unusable = cache_problem(cache_path, fp32) if cache_path.is_file() and not recalibrate else None
    if cache_path.is_file() and not recalibrate and unusable is None:
        status = "cache hit"
    else:
        if unusable:
            progress(f"warning: the calibration cache {cache_path} {unusable}; calibrating again")
        progress(f"calibrating ({method}, {len(calib.tensors)} tensors)")
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        timings["calibrate"] = calibrate(fp32_path, calib, method, target, cache_path, input_name)
        status = ("recalibrated (forced)" if recalibrate and cache_path.is_file() else
                  f"rebuilt: the cached file {unusable}" if unusable else "computed")
    macs = layer_macs(fp32)
    total_macs = sum(macs.values()) or 1

    def holdout_metrics(path: Path) -> dict:
        return parity.compare(holdout_expected, OnnxRuntimeRunner(path)(calib.holdout))

    rescue = None
    start = time.perf_counter()
    if exclude == "auto":
        progress("measuring layer sensitivity for the accuracy rescue")
        probe = calib.tensors[:RESCUE_PROBE]
        reference = OnnxRuntimeRunner(fp32_path)(probe)
        with tempfile.TemporaryDirectory(prefix="cnnx-int8-") as tmp:
            trial = Path(tmp) / "trial.onnx"
            quantize(fp32_path, trial, cache_path, method, target, [])
            before = holdout_metrics(trial)
            probe_before = _sqnr(trial, probe, reference)
            chosen: list[str] = []
            trials = [{"float_layers": 0, "probe_sqnr_db": probe_before}]
            ranking: list[tuple[str, float]] = []
            if probe_before < target_sqnr_db:
                added = layer_noise(fp32, cache_path, target, probe)
                ranking = sorted(added.items(), key=lambda kv: -kv[1])
                cap = max(1, int(len(ranking) * RESCUE_MAX_SHARE))

                def mac_share(k: int) -> float:
                    return sum(macs.get(n, 0) for n in with_producers(fp32, ranking[:k])) / total_macs


                def attempt(k: int) -> float:
                    quantize(fp32_path, trial, cache_path, method, target, with_producers(fp32, ranking[:k]))
                    value = _sqnr(trial, probe, reference)
                    trials.append({"float_layers": k, "probe_sqnr_db": value})
                    return value

                steps = sorted({min(cap, 2 ** i) for i in range(cap.bit_length() + 1)})
                lo, hi = 0, None
                for k in steps:  # doubling: find a count that meets the target
                    if attempt(k) >= target_sqnr_db:
                        hi = k
                        break
                    lo = k
                if hi is None:  # target out of reach: a partial rescue must pay for its float layers
                    affordable = [t for t in trials if mac_share(t["float_layers"]) <= RESCUE_MAX_MAC_SHARE]
                    best = max(t["probe_sqnr_db"] for t in affordable)
                    worth_it = best - probe_before >= RESCUE_MIN_GAIN_DB
                    hi = min((t["float_layers"] for t in affordable if t["probe_sqnr_db"] >= best - 0.5),
                             default=0) if worth_it else 0
                else:
                    while hi - lo > 1:  # bisect to the fewest float layers that still meet the target
                        mid = (lo + hi) // 2
                        if attempt(mid) >= target_sqnr_db:
                            hi = mid
                        else:
                            lo = mid
                chosen = with_producers(fp32, ranking[:hi])
        rescue = {"target_sqnr_db": target_sqnr_db, "probe": f"first {len(probe)} calibration tensors",
                  "probe_sqnr_before_db": probe_before, "trials": trials,
                  "ranking_top": [{"node": n, "added_nsr": v} for n, v in ranking[:10]],
                  "sqnr_before_db": before["sqnr_db"], "metrics_before": before,
                  "max_float_share": RESCUE_MAX_SHARE, "max_float_mac_share": RESCUE_MAX_MAC_SHARE}
        exclude_list = chosen
    else:
        exclude_list = list(exclude or [])
    progress(f"quantizing ({target} Q/DQ form)")
    quantize(fp32_path, out_path, cache_path, method, target, exclude_list)
    timings["quantize" if exclude != "auto" else "rescue_and_quantize"] = round(time.perf_counter() - start, 3)
    quantized = onnx.load(str(out_path))
    float_macs = sum(macs.get(n, 0) for n in exclude_list)
    q = target_options(target)
    return {
        "target": target, "target_is_default": target == DEFAULT_Q_DQ_FORM,
        "form": ("int8 symmetric activations and weights (zero points 0), per-channel weights on axis 0, "
                 "float biases: the Q/DQ form TensorRT's parser accepts; Q/DQ on the inputs of weighted layers, "
                 "not their outputs; residual Add/Mul in float") if target == "tensorrt" else
                ("uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases: ONNX "
                 "Runtime's fast x86 (VNNI/AMX) path"),
        "activation_type": "int8" if target == "tensorrt" else "uint8", "weight_type": "int8",
        "per_channel": True, "quantize_bias": target != "tensorrt",
        "ort_extra_options": q["extra_options"],
        "op_types_not_quantized": list(TENSORRT_FLOAT_OPS) if target == "tensorrt" else [],
        "calibration": {**calib.described, "method": method, "sha256": calib.sha256,
                        "cache": {"status": status, "key": key, "path": str(cache_path), "key_parts": parts}},
        "holdout": calib.holdout_described,
        "float_layers": {"mode": "auto" if exclude == "auto" else ("manual" if exclude_list else "none"),
                         "nodes": exclude_list, "count": len(exclude_list),
                         "quantizable_layers": len(macs), "float_mac_share": float_macs / total_macs},
        "rescue": rescue,
        "accuracy": None,  # record_accuracy: the export's parity check of these bytes measures it
        "qdq": qdq_summary(quantized),
        "timings_s": timings,
    }, quantized


def record_accuracy(details: dict, held_out: dict) -> None:
    """Fill in the held-out accuracy (parity metrics against eager fp32) of an artifact build_int8 made, and
    whether its rescue met the target."""
    details["accuracy"] = {"vs": "eager PyTorch fp32", "inputs": "held-out photos", **held_out}
    rescue = details.get("rescue")
    if rescue is not None:
        sqnr = held_out["sqnr_db"]
        rescue.update(sqnr_after_db=sqnr, met_target=sqnr is not None and sqnr >= rescue["target_sqnr_db"])


def convert(source: Source, path: Path) -> Variant:
    """The int8 variant (precisions.py's converter): quantize the fp32 graph into a hidden file beside `path`.
    It is judged on held-out photos (eager outputs of photos never used for calibration), and the check's
    metrics become the manifest's held-out accuracy."""
    options, calib = source.options, source.calib
    expected = TorchRunner(source.model)(calib.holdout)
    held_out = CheckData.from_arrays(calib.holdout, expected, {**calib.holdout_described, "random": 0,
                                                               "held_out": True})
    key_parts = {"model": source.spec.name, "weights": source.weights_info, "opset": options.opset,
                 "simplified": bool(source.simplify_info.get("applied")),
                 "onnxruntime": tool_versions().get("onnxruntime")}
    # a write that fails anywhere in here (the temporary fp32 copy included) is reported by scratch_path, which
    # names the full folder: the output folder or TMPDIR
    with scratch_path(path) as tmp, contextlib.ExitStack() as stack:  # the quantizer writes a file
        fp32_file = source.fp32_file
        if fp32_file is None:  # no fp32 artifact written by this export: quantize a temporary copy
            fp32_file = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cnnx-fp32-"))) / "fp32.onnx"
            onnx.save(source.graph, fp32_file)
        details, quantized = source.stage(
            "quantizing to int8", "int8", build_int8, fp32_file, source.graph, tmp, calib=calib,
            holdout_expected=expected, method=options.calib_method, target=options.q_dq_form,
            exclude=options.int8_exclude, cache_dir=source.out / CACHE_DIR, key_parts=key_parts,
            recalibrate=options.recalibrate, progress=source.progress)
        hold_point("int8_written")

    def finish(payload: bytes, check: CheckResult | None) -> None:  # the held-out accuracy is the check's
        metrics = (check.per_batch[str(held_out.batch_size)] if check else
                   parity.compare(expected, OnnxRuntimeRunner(payload)(calib.holdout)))
        record_accuracy(details, metrics)

    return Variant(quantized, details, held_out, finish)
