"""ONNX Runtime runner (CPU execution provider).

Thread safety: `InferenceSession.run` is thread-safe, so concurrent calls go straight to the one session
and run in parallel.

Throughput mode: one session with one intra-op thread, and `concurrency` = the thread count (default: every
core) callers at once, each computing on its own thread. Measured against the alternatives by
`scripts/ort_throughput.py` (ResNet-18 fp32, batch 1, 2 cores): N sessions of one thread each serve about
the same images/s (and hold N copies of the weights); one session with N intra-op threads and N callers is
slower (the callers' parallel loops contend for one thread pool)."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from ..errors import UsageError, first_line
from .base import Runner, RunOptions


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "the onnxruntime package is not installed (pip install onnxruntime)"
        return None

    def __init__(self, model: str | Path | bytes, threads: int | None = None,
                 providers: tuple = ("CPUExecutionProvider",), mode: str = "latency", options: dict | None = None):
        """`options`: more SessionOptions attributes (e.g. enable_profiling for per-node times)."""
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only: ORT's warnings are not actionable for users
        for name, value in (options or {}).items():
            setattr(session_options, name, value)
        self.mode = mode
        if mode == "throughput":
            session_options.intra_op_num_threads = 1
            self.concurrency = threads or os.cpu_count() or 1
        elif threads:
            session_options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, session_options, providers=list(providers))
        except Exception as exc:  # ORT raises its own exception types for corrupt/invalid files
            what = "the ONNX model" if isinstance(model, bytes) else f"'{model}'"
            raise UsageError(f"ONNX Runtime cannot load {what}: {first_line(exc)}",
                             "the file is corrupt or not an ONNX model; re-export it") from None
        self.input_name = self.session.get_inputs()[0].name

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> OnnxRuntimeRunner:
        return cls(path, threads=options.threads, mode=options.mode)

    @classmethod
    def runtime_details(cls) -> dict:
        import onnxruntime as ort

        return {"providers": list(ort.get_available_providers())}

    def close(self) -> None:
        self.session = None  # ORT frees the session (weights, arenas) with its last reference

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


@functools.cache
def int8_kernels_saturate() -> bool:
    """Whether this ONNX Runtime's uint8 x int8 kernels saturate on this CPU. x86 CPUs without VNNI multiply
    them with VPMADDUBSW, whose pairwise int16 sums clip at 32767, so 8-bit weights next to large activations lose
    accuracy (ONNX Runtime's quantization guide: "might suffer from saturation ... There is no such issue on x64
    with VNNI"). Measured rather than read from CPU flags, so it holds for whatever CPU (or emulator) and ONNX
    Runtime build runs it: a 1x1 conv over 64 channels of 255 x 127 (uint8 activations, int8 weights, a
    quantized output: the QLinearConv every optimized session fuses) is 64 exactly, about 32 saturated."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    channels = 64
    constants = [numpy_helper.from_array(np.array(1 / 255, np.float32), "x_scale"),
                 numpy_helper.from_array(np.array(0, np.uint8), "x_zero"),
                 numpy_helper.from_array(np.full((8, channels, 1, 1), 127, np.int8), "w"),
                 numpy_helper.from_array(np.full(8, 1 / 127, np.float32), "w_scale"),
                 numpy_helper.from_array(np.zeros(8, np.int8), "w_zero"),
                 numpy_helper.from_array(np.array(0.5, np.float32), "y_scale")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "y_scale", "x_zero"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "y_scale", "x_zero"], ["y"])]
    graph = helper.make_graph(nodes, "u8s8_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  [1, channels, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    out = OnnxRuntimeRunner(model.SerializeToString())(np.ones((1, channels, 2, 2), np.float32))
    return bool(np.abs(out - channels).max() > 1.0)
