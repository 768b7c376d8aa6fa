"""ResNet-50 on ONNX Runtime CPU: fp32 ONNX vs the cpu-form INT8 Q/DQ ONNX, side by side in one run.

Batch 1, 2 threads by default; the same timing loop and statistics as `cnnx bench` (each case timed in its
own block: interleaving two sessions makes their spinning thread pools fight for the cores). Prints median
and p90 latency and the fp32/int8 speed ratio (the INT8 issue's target: >= 2.5x).

    python scripts/int8_speed.py [--model resnet50] [--threads 2] [--duration 5]
"""

from __future__ import annotations

import argparse
import tempfile

from cnnx.bench.suite import run_bench
from cnnx.hardware import describe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnx-int8-speed-") as tmp:
        report = run_bench(args.model, backends=("onnxruntime",), precisions=("fp32", "int8"), batches=(1,),
                           threads=args.threads, duration_s=args.duration, device="cpu", out_dir=tmp,
                           export_kwargs={"calib_data": "samples"})
    stats = {c.precision: c.latency for c in report.cases}
    print(f"machine: {describe(report.machine)}")
    print(f"onnxruntime {report.machine['versions']['onnxruntime']}, {args.model}, batch 1, {args.threads} threads")
    for precision, s in stats.items():
        print(f"  {precision:5s} median {s['median_ms']:8.2f} ms   p90 {s['p90_ms']:8.2f} ms   CoV {s['cov_pct']:.1f}%")
    ratio = stats["fp32"]["median_ms"] / stats["int8"]["median_ms"]
    print(f"  speed ratio fp32/int8 (median): {ratio:.2f}x  (target >= 2.5x)")


if __name__ == "__main__":
    main()
