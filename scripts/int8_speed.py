"""ResNet-50 latency on ONNX Runtime CPU: fp32 ONNX vs the cpu-form INT8 Q/DQ ONNX, side by side.

Batch 1, intra_op_num_threads=2 (default), warm-up, then interleaved timed runs of both sessions so that
background load hits both alike. Reports median / p90 ms and the fp32/int8 speed ratio (target >= 2.5x).
Usage: python scripts/int8_speed.py [--model resnet50] [--threads 2] [--iters 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cnnx.data import load_batch, sample_images
from cnnx.export.pipeline import export_model
from cnnx.machine import describe, machine_info
from cnnx.models.registry import get_spec


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--calib-size", type=int, default=32)
    parser.add_argument("--out", default=None, help="export folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnx-int8-speed-") as tmp:
        out = Path(args.out or tmp)
        results = export_model(args.model, precisions=("fp32", "int8"), out_dir=out, check=False,
                               calib_data="samples", calib_size=args.calib_size, int8_target="cpu")
        paths = {r.manifest["precision"]: r.path for r in results}
        spec = get_spec(args.model)
        x = load_batch(sample_images()[:1], spec.preprocess)
        sessions = {p: session(paths[p], args.threads) for p in ("fp32", "int8")}
        name = {p: s.get_inputs()[0].name for p, s in sessions.items()}
        for _ in range(args.warmup):
            for p, s in sessions.items():
                s.run(None, {name[p]: x})
        times = {p: [] for p in sessions}
        for _ in range(args.iters):  # interleaved: background load affects both alike
            for p, s in sessions.items():
                start = time.perf_counter()
                s.run(None, {name[p]: x})
                times[p].append((time.perf_counter() - start) * 1e3)
    stats = {p: (float(np.median(t)), float(np.percentile(t, 90))) for p, t in times.items()}
    print(f"machine: {describe(machine_info(args.threads))}")
    print(f"onnxruntime {ort.__version__}, {args.model}, batch 1, intra_op_num_threads={args.threads}, "
          f"{args.warmup} warm-up + {args.iters} timed runs each (interleaved)")
    for p, (median, p90) in stats.items():
        print(f"  {p:5s} median {median:8.2f} ms   p90 {p90:8.2f} ms")
    ratio = stats["fp32"][0] / stats["int8"][0]
    print(f"  speed ratio fp32/int8 (median): {ratio:.2f}x  (target >= 2.5x)")


if __name__ == "__main__":
    main()
