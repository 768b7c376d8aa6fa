"""How each of int8's Q/DQ forms (precisions.Q_DQ_FORMS) is written: its recipe, in one place per form.

- "tensorrt": symmetric int8 activations and weights (zero points 0), per-channel weights, float biases, Q/DQ
  placed by NVIDIA's rules (qdq_tensorrt.py). Judged on the graph's own arithmetic (ONNX Runtime without its
  int8 kernel fusions), which is what TensorRT computes.
- "cpu": ONNX Runtime's fast x86 path: uint8 asymmetric activations, int8 symmetric per-channel weights, int32
  biases, placed by ONNX Runtime's quantizer. Its weights depend on the CPUs it is for (`cpus`): "vnni" keeps
  all 8 bits (CPUs with AVX-512 VNNI, AVX-VNNI or AMX multiply exactly); "any" keeps 7 (ONNX Runtime's
  reduce_range), because x86 CPUs without VNNI add uint8 x int8 products in pairs into int16, which clips at
  32767 once |weight| > 64 meets activations near 255 (2 x 255 x 64 = 32640 never does). "auto" is "vnni"
  when this machine's ONNX Runtime multiplies exactly, else "any". Judged as users run it (every
  optimization on) and against the graph's own arithmetic: a gap means the CPU's kernels lose accuracy.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import UsageError
from ..precisions import INT8_CPU_TARGETS
from . import qdq_tensorrt

CPU_TARGETS = INT8_CPU_TARGETS  # what `cpus` may say for the cpu form


def unfused() -> dict:
    """OnnxRuntimeRunner options that run a Q/DQ graph as written: basic optimizations only, so no Q/DQ pair is
    fused into an int8 kernel (ONNX Runtime fuses them from ORT_ENABLE_EXTENDED on)."""
    import onnxruntime as ort

    return {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}


@dataclass(frozen=True)
class Recipe:
    """One form's quantization, as the manifest records it."""

    form: str
    activations: str  # "int8" (symmetric) or "uint8" (asymmetric)
    symmetric_activations: bool  # calibration ranges symmetric around 0
    quantize_bias: bool
    weight_bits: int
    description: str
    judged_unfused: bool  # its parity gate runs without ONNX Runtime's int8 kernel fusions
    cpus: str | None = None  # cpu form: "vnni" or "any" (see the module doc)

    def fake_quant(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """x through this form's activation quantize -> dequantize with the calibrated range (lo, hi)."""
        if self.symmetric_activations:
            return symmetric_fake_quant(x, max(abs(lo), abs(hi)), 127)
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-12)
        zero = np.round(-lo / scale)
        return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale

    def session_options(self) -> dict:
        """The OnnxRuntimeRunner options its accuracy is judged with."""
        return unfused() if self.judged_unfused else {}

    def to_dict(self) -> dict:
        return {"form": self.form, "activation_type": self.activations, "weight_type": "int8",
                "weight_bits": self.weight_bits, "per_channel": True, "quantize_bias": self.quantize_bias,
                "description": self.description, "judged": "the graph's own arithmetic (ONNX Runtime without "
                "int8 kernel fusion)" if self.judged_unfused else "as users run it (ONNX Runtime, all "
                "optimizations), and against the graph's own arithmetic", "cpus": self.cpus}


def symmetric_fake_quant(x: np.ndarray, peak, levels: int) -> np.ndarray:
    scale = np.maximum(np.asarray(peak) / levels, 1e-12)
    return np.clip(np.round(x / scale), -levels, levels) * scale


TENSORRT = Recipe("tensorrt", "int8", True, False, 8, "symmetric int8 activations and weights (zero points 0), "
                  "per-channel weights, float biases; Q/DQ placed by NVIDIA's rules for TensorRT (qdq_tensorrt.py)",
                  judged_unfused=True)


def cpu_recipe(cpus: str) -> Recipe:
    """The cpu form's recipe for the CPUs an artifact is for ("auto" decided on this machine)."""
    if cpus not in CPU_TARGETS:
        raise UsageError(f"unknown CPU target '{cpus}' for the cpu Q/DQ form", f"choose from {', '.join(CPU_TARGETS)}")
    if cpus == "auto":
        from ..backends.onnxruntime import int8_kernels_saturate

        cpus = "any" if int8_kernels_saturate() else "vnni"
    bits = 8 if cpus == "vnni" else 7
    return Recipe("cpu", "uint8", False, True, bits,
                  f"uint8 asymmetric activations, int8 symmetric per-channel {bits}-bit weights, int32 biases: ONNX "
                  "Runtime's fast x86 path, " + ("for CPUs with VNNI/AMX (saturates without them)" if cpus == "vnni"
                                                 else "exact on every x86 CPU, VNNI or not"),
                  judged_unfused=False, cpus=cpus)


def recipe(form: str, cpus: str = "auto") -> Recipe:
    return TENSORRT if form == TENSORRT.form else cpu_recipe(cpus)


def ranges_of(cache_path: Path) -> dict[str, tuple[float, float]]:
    """Tensor -> (lowest, highest) from ONNX Runtime's calibration cache."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    ranges = {}
    for name, data in load_tensors_data(cache_path).data.items():
        lowest, highest = np.ravel(np.asarray(data.range_value))[:2]  # range_value: (lowest, highest)
        ranges[name] = (float(lowest), float(highest))
    return ranges


@contextlib.contextmanager
def quiet():
    """ONNX Runtime's quantizer prints progress to stdout (would corrupt --json) and logs warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def ort_quantize_options(chosen: Recipe) -> dict:
    """quantize_static's keyword arguments for the cpu form's recipe."""
    from onnxruntime import quantization as q

    return {"quant_format": q.QuantFormat.QDQ, "per_channel": True, "weight_type": q.QuantType.QInt8,
            "activation_type": q.QuantType.QUInt8, "reduce_range": chosen.weight_bits < 8,
            "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True,
                              "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1}}}


class Quantizer:
    """Writes the int8 graph of one fp32 graph in one form, with a chosen set of layers kept in float."""

    def __init__(self, chosen: Recipe, fp32_path: Path, fp32: onnx.ModelProto, cache_path: Path):
        self.recipe, self.fp32_path, self.fp32, self.cache_path = chosen, fp32_path, fp32, cache_path
        self._ranges: dict | None = None

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        if self._ranges is None:
            self._ranges = ranges_of(self.cache_path)
        return self._ranges

    def write(self, path: Path, float_layers: list[str]) -> None:
        if self.recipe.form == TENSORRT.form:
            onnx.save(qdq_tensorrt.place(self.fp32, self.ranges, float_layers), str(path))
            return
        from onnxruntime.quantization import CalibrationMethod, quantize_static

        with quiet():  # the ranges come from the cache: no calibration inference here
            quantize_static(str(self.fp32_path), str(path), None, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=list(float_layers), calibration_cache_path=str(self.cache_path),
                            **ort_quantize_options(self.recipe))

    def float_nodes(self, layers: list[str]) -> list[str]:
        """The nodes to keep in float so that `layers` (and their inputs) are computed in float. In the tensorrt
        form a float layer's input has no Q/DQ (placement is per reader). ONNX Runtime's quantizer (the cpu form)
        quantizes a tensor when its producer is quantized, so excluding only a layer leaves its input Q/DQ'd:
        the layer that produces that input (through ReLU/pooling) is kept in float too."""
        if self.recipe.form == TENSORRT.form:
            return list(dict.fromkeys(layers))
        producer = {out: node for node in self.fp32.graph.node for out in node.output}
        by_name = {n.name: n for n in self.fp32.graph.node}
        chosen: list[str] = []
        for name in layers:
            chosen.append(name)
            upstream = producer.get(by_name[name].input[0])
            while upstream is not None and upstream.op_type in _PASS_THROUGH:
                upstream = producer.get(upstream.input[0])
            if upstream is not None and upstream.op_type in qdq_tensorrt.WEIGHTED_OPS:
                chosen.append(upstream.name)
        return list(dict.fromkeys(chosen))


# Ops between a layer and the layer that feeds it that keep the activation's quantization (no new Q/DQ).
_PASS_THROUGH = ("Relu", "Clip", "MaxPool", "Flatten", "Reshape", "Identity")
