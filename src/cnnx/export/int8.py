"""fp32 ONNX -> int8 Q/DQ ONNX: the int8 converter and its steps.

`convert` (precisions.py's converter for int8) runs `build_int8`, whose steps are named functions:

1. `calibration_ranges`: the activation ranges, measured once per (model, weights, calibration tensors,
   method, form, size, opset, simplification) and stored as ONNX Runtime's own JSON calibration cache under
   `<out>/.calibration/<key>.json`; later exports and every trial below read them back. With method "auto",
   `choose_calibration` picks minmax or mse (mse_ranges.py) by the accuracy of their int8 graphs on calibration
   tensors held out of their calibration: minmax keeps the outliers trained networks need (entropy's clipping
   costs the trained digits network 7-17 dB), mse's clipping gains where there are none (seeded zoo).
2. the form's `Quantizer` (qdq_forms.py): the tensorrt form places Q/DQ by NVIDIA's rules (qdq_tensorrt.py),
   the cpu form by ONNX Runtime's quantizer with the recipe of the CPUs it is for.
3. the float layers: `classifier_choice` (tensorrt form: the classifier stays float unless int8 costs it
   nothing on the probe) and, with `exclude="auto"`, `rescue`: quantize everything, then rank the
   Conv/Gemm/MatMul nodes by the quantization noise each causes in isolation (`layer_noise`: noise-to-signal
   ratio of its Q/DQ'd input activation with the calibrated range, plus that of its per-channel Q/DQ'd weights,
   on the fp32 activations of a few calibration tensors), and keep the worst in float - 1, 2, 4, ... of them,
   then bisect - until the logits SQNR on those tensors reaches the target, with at most RESCUE_MAX_SHARE of
   the nodes in float. If the target is out of reach, only trials leaving at most RESCUE_MAX_MAC_SHARE of the
   multiply-accumulates in float count, and the fewest float layers within 0.5 dB of the best trial are kept,
   none unless they gain at least RESCUE_MIN_GAIN_DB: float layers cost speed, so they must pay for themselves.
4. the int8 graph, and `describe`: what the manifest records.
Afterwards (`finish`), the export's check of the artifact's bytes on held-out photos (never calibration data)
gives the accuracy the manifest reports; for the cpu form it also compares ONNX Runtime's int8 kernels with
the graph's own arithmetic (`kernel_check`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import onnx

from .. import parity
from ..artifacts import atomic_path, scratch_path, tool_versions
from ..backends.onnxruntime import OnnxRuntimeRunner
from ..backends.torch import TorchRunner
from ..errors import UsageError
from ..hold import hold_point
from ..precisions import AUTO_CALIBRATION_METHODS, CALIBRATION_METHODS, DEFAULT_Q_DQ_FORM, Q_DQ_FORMS
from ..reference import CheckData, CheckResult
from .calibration import CalibrationSet
from .mse_ranges import HISTOGRAM_BINS, mse_ranges
from .qdq_forms import CPU_TARGETS, Quantizer, Recipe, quiet, recipe, symmetric_fake_quant, unfused
from .qdq_tensorrt import (
    WEIGHTED_OPS,
    classifier_layer,
    per_channel_dequantized,
    place,
    placement_summary,
    pooled_ranges,
    weight_axis,
)
from .variant import Source, Variant

TARGET_SQNR_DB = 30.0
RESCUE_MAX_SHARE = 0.25  # at most this share of the quantizable nodes is kept in float
RESCUE_MAX_MAC_SHARE = 0.3  # a rescue that misses the target may leave at most this share of MACs in float
RESCUE_MIN_GAIN_DB = 1.0  # below the target, float layers must buy at least this much SQNR to be kept
RESCUE_PROBE = 8  # calibration tensors used to rank layers and to judge trials
CLASSIFIER_INT8_MAX_LOSS_DB = 0.0  # the classifier is int8 only where that costs nothing on the probe
KERNEL_MAX_LOSS_DB = 1.0  # cpu form: ONNX Runtime's int8 kernels may lose at most this against the graph itself
CACHE_DIR = ".calibration"
CACHE_FORMAT = "cnnx-int8-calibration/1"
CALIB_BATCH = 4  # tensors per calibration inference (memory of all intermediates stays bounded)


def method_enum(method: str):
    """ONNX Runtime's calibrator for `method`; "mse" uses the percentile one for its |x| histograms only."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile, "mse": CalibrationMethod.Percentile}[method]


def calibrator_options(method: str, symmetric: bool) -> dict:
    if method == "mse":  # histograms of |x|, fine enough for mse_ranges to pick a clipping edge
        return {"symmetric": True, "num_bins": HISTOGRAM_BINS}
    return {"symmetric": symmetric}


def validate_options(method: str, target: str, exclude, cpus: str = "auto") -> None:
    if method not in CALIBRATION_METHODS:
        raise UsageError(f"unknown calibration method '{method}'", f"choose from {', '.join(CALIBRATION_METHODS)}")
    if target not in Q_DQ_FORMS:
        raise UsageError(f"unknown INT8 target '{target}'", f"choose from {', '.join(Q_DQ_FORMS)}")
    if cpus not in CPU_TARGETS:
        raise UsageError(f"unknown CPU target '{cpus}' for the cpu Q/DQ form", f"choose from {', '.join(CPU_TARGETS)}")
    if exclude is not None and exclude != "auto" and (
            isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude)):
        raise UsageError(f"int8 exclusions must be 'auto' or a list of node names, not {exclude!r}")


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


def calibrate(fp32_path: Path, calib: CalibrationSet, method: str, symmetric: bool, cache_path: Path,
              input_name: str) -> float:
    """Measure the tensor ranges on the calibration tensors and store them as ORT's calibration cache."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    start = time.perf_counter()
    with quiet(), tempfile.TemporaryDirectory(prefix="cnnx-calib-") as tmp:
        calibrator = create_calibrator(Path(fp32_path), _op_types(),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method_enum(method),
                                       extra_options=calibrator_options(method, symmetric))
        # One collect per chunk: MinMax merges ranges and the histogram methods merge histograms, so
        # the intermediates of only CALIB_BATCH tensors are held at a time.
        for i in range(0, len(calib.tensors), CALIB_BATCH):
            calibrator.collect_data(_Reader(input_name, calib.tensors[i:i + CALIB_BATCH]))
        ranges = (mse_ranges(calibrator.collector.histogram_dict, symmetric) if method == "mse"
                  else calibrator.compute_data())
        del calibrator
    with atomic_path(cache_path) as tmp_file:  # a killed run never leaves half a cache behind
        save_tensors_data(ranges, tmp_file)
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


@dataclass
class Calibration:
    """Step 1's result: where the ranges are and how they got there."""

    cache_path: Path
    status: str  # "cache hit", "computed", "recalibrated (forced)", "rebuilt: ..."
    key: str
    key_parts: dict
    seconds: float | None  # None: read from the cache

    @property
    def method(self) -> str:  # one of CALIBRATION_METHODS other than "auto": the one these ranges come from
        return self.key_parts["method"]

    def to_dict(self) -> dict:
        return {"status": self.status, "key": self.key, "path": str(self.cache_path), "key_parts": self.key_parts}


def calibration_ranges(fp32_path: Path, fp32: onnx.ModelProto, calib: CalibrationSet, method: str, form: Recipe,
                       cache_dir: Path, key_parts: dict, recalibrate: bool, input_name: str,
                       progress) -> Calibration:
    """Step 1: the calibration cache of this graph, data, method and form, read back or measured."""
    parts = {"format": CACHE_FORMAT, **key_parts, "calibration_sha256": calib.sha256, "method": method,
             "target": form.form, "calib_size": len(calib.tensors)}
    key = cache_key(**parts)
    cache_path = Path(cache_dir) / f"{key}.json"
    unusable = cache_problem(cache_path, fp32) if cache_path.is_file() and not recalibrate else None
    if cache_path.is_file() and not recalibrate and unusable is None:
        return Calibration(cache_path, "cache hit", key, parts, None)
    if unusable:
        progress(f"warning: the calibration cache {cache_path} {unusable}; calibrating again")
    progress(f"calibrating ({method}, {len(calib.tensors)} tensors)")
    status = ("recalibrated (forced)" if recalibrate and cache_path.is_file() else
              f"rebuilt: the cached file {unusable}" if unusable else "computed")
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    seconds = calibrate(fp32_path, calib, method, form.symmetric_activations, cache_path, input_name)
    return Calibration(cache_path, status, key, parts, seconds)


def auto_probe_size(count: int) -> int:
    """Calibration tensors method "auto" judges its candidates on: a third of them, at least RESCUE_PROBE. Fewer
    mislead: on the trained digits network the first 8 or 16 of 80 favour mse by 0.2-0.5 dB, the first 24 or more
    favour minmax by 1 dB, as 1000 held-out digits do (1.4 dB)."""
    return max(RESCUE_PROBE, count // 3)


def check_calibration_size(method: str, calib: CalibrationSet) -> None:
    """Method "auto" holds its probe out of its candidates' calibration, which needs RESCUE_PROBE tensors too."""
    if method == "auto" and len(calib.tensors) < 2 * RESCUE_PROBE:
        raise UsageError(f"--calib-method auto needs at least {2 * RESCUE_PROBE} calibration tensors, not "
                         f"{len(calib.tensors)}", "raise --calib-size, or choose a method")


def choose_calibration(fp32_path: Path, fp32: onnx.ModelProto, calib: CalibrationSet, form: Recipe,
                       cache_dir: Path, key_parts: dict, recalibrate: bool, input_name: str, work: Path,
                       progress) -> tuple[Calibration, dict]:
    """Method "auto": each of AUTO_CALIBRATION_METHODS calibrates on the calibration tensors but the first
    `auto_probe_size`, and the fully quantized graphs are judged on those first tensors, which no candidate's
    ranges have seen (judged on tensors it calibrated on, clipping always looks best: entropy's on the trained
    digits network, which it costs 17 dB on held-out digits). The chosen method then calibrates on all of them.
    With `samples` the judged tensors are views (whole, mirrored, crops) of the same 6 photos the candidates
    calibrate on, and it can disagree with other photos (docs/results/int8-vs-modelopt.md); a folder of distinct
    images gives a truly held-out probe."""
    check_calibration_size("auto", calib)
    size = auto_probe_size(len(calib.tensors))
    judged, rest = calib.tensors[:size], calib.tensors[size:]
    subset = dataclasses.replace(calib, tensors=rest)
    scores: dict[str, float] = {}
    reference = None  # fp32's logits on the judged tensors, computed once for every candidate
    for method in AUTO_CALIBRATION_METHODS:
        candidate = calibration_ranges(fp32_path, fp32, subset, method, form, cache_dir, key_parts, recalibrate,
                                       input_name, progress)
        probe = Probe(Quantizer(form, fp32_path, fp32, candidate.cache_path), subset, work, tensors=judged,
                      reference=reference)
        reference = probe.reference
        scores[method] = probe.sqnr([])
    chosen = max(scores, key=scores.__getitem__)
    calibration = calibration_ranges(fp32_path, fp32, calib, chosen, form, cache_dir, key_parts, recalibrate,
                                     input_name, progress)
    return calibration, {"chosen": chosen, "probe_sqnr_db": scores,
                         "probe": f"the first {len(judged)} calibration tensors, held out of the candidates' "
                                  "calibration"}


def layer_macs(proto: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates per Conv/Gemm/MatMul node at batch 1, from the graph's inferred shapes."""
    if not proto.graph.value_info:
        proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in (*proto.graph.value_info, *proto.graph.output)}
    weights = {init.name: list(init.dims) for init in proto.graph.initializer}
    macs = {}
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in weights:
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


def layer_noise(quantizer: Quantizer, probe: np.ndarray) -> dict[str, float]:
    """Quantization noise of each Conv/Gemm/MatMul node in isolation: the noise-to-signal ratio of its
    Q/DQ'd input activation (with the calibrated range, on the fp32 activations of the probe tensors)
    plus that of its per-channel Q/DQ'd weights. A node whose input has outliers that stretch its range,
    or whose weights have outlier channels, scores high; one pass of the fp32 graph ranks all nodes."""
    # MaxPool outputs at their input's scale, as both forms write them (ONNX Runtime's quantizer shares it too);
    # a pool that a float layer also reads keeps its own scale in the tensorrt form, which this ranking ignores
    fp32, ranges, form = quantizer.fp32, pooled_ranges(quantizer.fp32, quantizer.ranges), quantizer.recipe
    inits = {i.name: i for i in fp32.graph.initializer}
    layers = [n for n in fp32.graph.node if n.op_type in WEIGHTED_OPS]
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
            noise[t] += float(((x - form.fake_quant(x, *ranges[t])) ** 2).sum())
            signal[t] += float((x ** 2).sum())
    levels = 2 ** (form.weight_bits - 1) - 1
    scores = {}
    for node in layers:
        act = noise.get(node.input[0], 0.0) / signal[node.input[0]] if signal.get(node.input[0]) else 0.0
        wq = 0.0
        if len(node.input) > 1 and node.input[1] in inits:
            w = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
            rows = np.moveaxis(w, weight_axis(node), 0)  # output channels first
            flat = rows.reshape(len(rows), -1)
            peak = np.abs(flat).max(axis=1, keepdims=True)
            error = ((flat - symmetric_fake_quant(flat, peak, levels)) ** 2).sum()
            wq = float(error / max((flat ** 2).sum(), 1e-30))
        scores[node.name] = act + wq
    return scores


class Probe:
    """Judges trial graphs: logits SQNR against fp32 (`reference`, else computed here) on `tensors` (default: the
    first RESCUE_PROBE calibration tensors), run as the form is judged."""

    def __init__(self, quantizer: Quantizer, calib: CalibrationSet, work: Path, tensors: np.ndarray | None = None,
                 reference: np.ndarray | None = None):
        self.quantizer, self.work = quantizer, work
        self.tensors = calib.tensors[:RESCUE_PROBE] if tensors is None else tensors
        self.reference = OnnxRuntimeRunner(quantizer.fp32_path)(self.tensors) if reference is None else reference
        self.trial = work / "trial.onnx"

    def run(self, path: Path, inputs: np.ndarray) -> np.ndarray:
        return OnnxRuntimeRunner(path, options=self.quantizer.recipe.session_options())(inputs)

    def sqnr(self, float_layers: list[str]) -> float:
        self.quantizer.write(self.trial, float_layers)
        return _probe_sqnr(self.reference, self.run(self.trial, self.tensors))


def classifier_choice(quantizer: Quantizer, probe: Probe) -> dict | None:
    """tensorrt form: keep the classifier float unless int8 costs it nothing on the probe. A batch-1 classifier is a
    GEMV, which gains nothing from int8 in TensorRT (ModelOpt keeps it float for that reason), while int8 logits
    carry the noise of every layer before them: on the seeded zoo a float classifier gains 0.05-0.1 dB on held-out
    photos, and int8 saves only the classifier's weight bytes.

    One run of the quantized graph serves both sides: with the classifier float and its input as an extra output,
    the int8 classifier is that input and the weights through Q/DQ, multiplied here (a Gemm: the weighted layer
    torch's Linear exports to)."""
    fp32 = quantizer.fp32
    name = classifier_layer(fp32) if quantizer.recipe.form == "tensorrt" else None
    if name is None:
        return None
    node = next(n for n in fp32.graph.node if n.name == name)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in fp32.graph.initializer if i.name in node.input[1:]}
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if (node.op_type != "Gemm" or node.input[1] not in weights or attributes.get("transA", 0)
            or attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0):
        as_int8, as_float = probe.sqnr([]), probe.sqnr([name])  # any other classifier: two trial graphs
    else:
        graph = place(fp32, quantizer.ranges, [name])
        session = OnnxRuntimeRunner(_with_outputs(graph, [node.input[0]]),
                                    options=quantizer.recipe.session_options()).session
        logits, features = session.run(None, {session.get_inputs()[0].name: probe.tensors})[:2]
        w = per_channel_dequantized(weights[node.input[1]], weight_axis(node))
        x = quantizer.recipe.fake_quant(features.astype(np.float64), *quantizer.ranges[node.input[0]])
        int8_logits = x @ (w.T if attributes.get("transB", 0) else w)
        if len(node.input) > 2 and node.input[2] in weights:
            int8_logits += weights[node.input[2]]
        as_float = _probe_sqnr(probe.reference, logits)
        as_int8 = _probe_sqnr(probe.reference, int8_logits.astype(np.float32))
    precision = "int8" if as_int8 >= as_float - CLASSIFIER_INT8_MAX_LOSS_DB else "float"
    return {"node": name, "precision": precision, "probe_sqnr_db": {"int8": as_int8, "float": as_float},
            "rule": f"int8 only if it loses at most {CLASSIFIER_INT8_MAX_LOSS_DB:g} dB on the probe"}


def _probe_sqnr(reference: np.ndarray, output: np.ndarray) -> float:
    sqnr = parity.compare(reference, output)["sqnr_db"]
    return float("-inf") if sqnr is None else sqnr  # None: NaN/Inf outputs, the worst possible trial


class RescueTrial(TypedDict):
    float_layers: int
    probe_sqnr_db: float


def rescue(quantizer: Quantizer, probe: Probe, base: list[str], target_sqnr_db: float, macs: dict[str, int],
           progress) -> tuple[list[str], dict]:
    """Step 3 with exclude="auto": the float layers that bring the probe to the target (see the module doc), on
    top of `base` (layers already float), and the record of the trials."""
    total_macs = sum(macs.values()) or 1
    probe_before = probe.sqnr(base)
    trials: list[RescueTrial] = [{"float_layers": 0, "probe_sqnr_db": probe_before}]
    ranking: list[tuple[str, float]] = []
    hi = 0
    if probe_before < target_sqnr_db:
        progress("measuring layer sensitivity for the accuracy rescue")
        ranking = sorted(((n, v) for n, v in layer_noise(quantizer, probe.tensors).items() if n not in base),
                         key=lambda kv: -kv[1])
        cap = max(1, int(len(ranking) * RESCUE_MAX_SHARE))

        def chosen(k: int) -> list[str]:
            return quantizer.float_nodes(base + [n for n, _ in ranking[:k]])

        def mac_share(k: int) -> float:
            return sum(macs.get(n, 0) for n in chosen(k)) / total_macs

        def attempt(k: int) -> float:
            value = probe.sqnr(chosen(k))
            trials.append({"float_layers": k, "probe_sqnr_db": value})
            return value

        lo, reached = 0, None
        for k in sorted({min(cap, 2 ** i) for i in range(cap.bit_length() + 1)}):  # doubling
            if attempt(k) >= target_sqnr_db:
                reached = k
                break
            lo = k
        if reached is None:  # target out of reach: a partial rescue must pay for its float layers
            affordable = [t for t in trials if mac_share(t["float_layers"]) <= RESCUE_MAX_MAC_SHARE]
            best = max(t["probe_sqnr_db"] for t in affordable)
            hi = min((t["float_layers"] for t in affordable if t["probe_sqnr_db"] >= best - 0.5),
                     default=0) if best - probe_before >= RESCUE_MIN_GAIN_DB else 0
        else:
            hi = reached
            while hi - lo > 1:  # bisect to the fewest float layers that still meet the target
                mid = (lo + hi) // 2
                if attempt(mid) >= target_sqnr_db:
                    hi = mid
                else:
                    lo = mid
    record = {"target_sqnr_db": target_sqnr_db, "probe": f"first {len(probe.tensors)} calibration tensors",
              "probe_sqnr_before_db": probe_before, "trials": trials,
              "ranking_top": [{"node": n, "added_nsr": v} for n, v in ranking[:10]],
              "max_float_share": RESCUE_MAX_SHARE, "max_float_mac_share": RESCUE_MAX_MAC_SHARE}
    return quantizer.float_nodes(base + [n for n, _ in ranking[:hi]]), record


def check_exclude(fp32: onnx.ModelProto, exclude: list[str]) -> None:
    names = [n.name for n in fp32.graph.node]
    unknown = [n for n in exclude if n not in set(names)]
    if unknown:
        layers = [n.name for n in fp32.graph.node if n.op_type in WEIGHTED_OPS]
        close = sorted({m for u in unknown for m in difflib.get_close_matches(u, names, n=3)})
        raise UsageError(f"no node named {', '.join(repr(u) for u in unknown)} in the graph to quantize",
                         (f"did you mean {', '.join(close)}? " if close else "")
                         + f"quantizable layers are e.g. {', '.join(layers[:5])} (see the int8 manifest's "
                           "'layers' or use --int8-exclude auto)")


def build_int8(fp32_path: Path, fp32: onnx.ModelProto, out_path: Path, *, calib: CalibrationSet,
               holdout_expected: np.ndarray, method: str, target: str, exclude, cache_dir: Path,
               key_parts: dict, recalibrate: bool = False, input_name: str = "images", cpus: str = "auto",
               target_sqnr_db: float = TARGET_SQNR_DB, progress=lambda stage: None) -> tuple[dict, onnx.ModelProto]:
    """Steps 1-4 (module doc): quantize `fp32_path` into `out_path` in Q/DQ form `target`. Returns the manifest's
    precision details (the held-out accuracy is filled in by record_accuracy) and the quantized graph."""
    form = recipe(target, cpus)
    macs = layer_macs(fp32)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cnnx-int8-") as tmp:
        choice = None
        if method == "auto":
            started = time.perf_counter()
            calibration, choice = choose_calibration(fp32_path, fp32, calib, form, cache_dir, key_parts, recalibrate,
                                                     input_name, Path(tmp), progress)
            timings["choose_calibration"] = round(time.perf_counter() - started, 3)  # the calibrations included
        else:
            calibration = calibration_ranges(fp32_path, fp32, calib, method, form, cache_dir, key_parts, recalibrate,
                                             input_name, progress)
        quantizer = Quantizer(form, fp32_path, fp32, calibration.cache_path)
        start = time.perf_counter()
        probe = Probe(quantizer, calib, Path(tmp))
        classifier = classifier_choice(quantizer, probe)
        float_layers = [classifier["node"]] if classifier and classifier["precision"] == "float" else []
        rescued = None
        if exclude == "auto":
            quantizer.write(probe.trial, float_layers)
            before = parity.compare(holdout_expected, probe.run(probe.trial, calib.holdout))
            float_layers, rescued = rescue(quantizer, probe, float_layers, target_sqnr_db, macs, progress)
            rescued.update(sqnr_before_db=before["sqnr_db"], metrics_before=before)
        elif exclude:
            float_layers = quantizer.float_nodes(float_layers + list(exclude))
    progress(f"quantizing ({form.form} Q/DQ form)")
    quantizer.write(out_path, float_layers)
    quantized = onnx.load(str(out_path))
    if calibration.seconds:
        timings["calibrate"] = calibration.seconds
    timings["rescue_and_quantize" if exclude == "auto" else "quantize"] = round(time.perf_counter() - start, 3)
    return describe(form, calib, calibration, choice, classifier, rescued, exclude, float_layers, macs, quantized,
                    timings), quantized


def describe(form: Recipe, calib: CalibrationSet, calibration: Calibration, choice: dict | None,
             classifier: dict | None, rescued: dict | None, exclude, float_layers: list[str], macs: dict[str, int],
             quantized: onnx.ModelProto, timings: dict) -> dict:
    """Step 4: the manifest's precision details of an int8 artifact."""
    mode = "auto" if exclude == "auto" else ("manual" if exclude else "none")
    return {
        "target": form.form, "target_is_default": form.form == DEFAULT_Q_DQ_FORM, "form": form.description,
        "recipe": form.to_dict(), "activation_type": form.activations, "weight_type": "int8",
        "per_channel": True, "quantize_bias": form.quantize_bias,
        "calibration": {**calib.described, "method": calibration.method, "sha256": calib.sha256,
                        "cache": calibration.to_dict(), "auto": choice},
        "holdout": calib.holdout_described,
        "classifier": classifier,
        "float_layers": {"mode": mode, "nodes": float_layers, "count": len(float_layers),
                         "quantizable_layers": len(macs),
                         "float_mac_share": sum(macs.get(n, 0) for n in float_layers) / (sum(macs.values()) or 1)},
        "rescue": rescued,
        "placement": placement_summary(quantized),
        "accuracy": None,  # record_accuracy: the export's parity check of these bytes measures it
        "qdq": qdq_summary(quantized),
        "timings_s": timings,
    }


def record_accuracy(details: dict, held_out: dict) -> None:
    """Fill in the held-out accuracy (parity metrics against eager fp32) of an artifact build_int8 made, and
    whether its rescue met the target."""
    details["accuracy"] = {"vs": "eager PyTorch fp32", "inputs": "held-out photos", **held_out}
    rescued = details.get("rescue")
    if rescued is not None:
        sqnr = held_out["sqnr_db"]
        rescued.update(sqnr_after_db=sqnr, met_target=sqnr is not None and sqnr >= rescued["target_sqnr_db"])


def kernel_check(payload: bytes, held_out: CheckData, fused: dict) -> tuple[dict, str | None]:
    """cpu form: ONNX Runtime's int8 kernels (`fused`: the metrics of the session every user runs) against the
    graph's own arithmetic on the same held-out inputs. Returns the record and, when the kernels lose more than
    KERNEL_MAX_LOSS_DB (saturating uint8 x int8 on CPUs without VNNI), the failure."""
    inputs = np.concatenate(list(held_out.batches()))
    exact = parity.compare(held_out.expected, OnnxRuntimeRunner(payload, options=unfused())(inputs))
    loss = (exact["sqnr_db"] or 0.0) - (fused["sqnr_db"] or float("-inf"))
    record = {"sqnr_db_optimized": fused["sqnr_db"], "sqnr_db_unfused": exact["sqnr_db"], "loss_db": loss,
              "max_loss_db": KERNEL_MAX_LOSS_DB}
    if loss <= KERNEL_MAX_LOSS_DB:
        return record, None
    return record, (f"ONNX Runtime's int8 kernels on this CPU lose {loss:.1f} dB against the graph's own "
                    f"arithmetic (> {KERNEL_MAX_LOSS_DB} dB): they saturate; export with --int8-cpus any")


def convert(source: Source, path: Path) -> Variant:
    """The int8 variant (precisions.py's converter): quantize the fp32 graph into a hidden file beside `path`.
    It is judged on held-out photos (eager outputs of photos never used for calibration), as its form says
    (qdq_forms.Recipe), and the check's metrics become the manifest's held-out accuracy."""
    options, calib = source.options, source.calib
    assert calib is not None  # the export loads the calibration set whenever int8 is asked for
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
            recalibrate=options.recalibrate, cpus=options.int8_cpus, progress=source.progress)
        hold_point("int8_written")
    form = recipe(options.q_dq_form, options.int8_cpus)

    def finish(payload: bytes, check: CheckResult | None) -> None:
        if check is not None:
            metrics = check.per_batch[str(held_out.batch_size)]
        else:
            metrics = parity.compare(expected, OnnxRuntimeRunner(payload, options=form.session_options())(
                calib.holdout))
        record_accuracy(details, metrics)
        if not form.judged_unfused:  # judged as users run it: do the kernels compute what the graph says?
            details["kernels"], failure = kernel_check(payload, held_out, metrics)
            if failure and check is not None:
                check.passed, check.failures = False, [*check.failures, failure]

    return Variant(quantized, details, held_out, finish, form.session_options())
