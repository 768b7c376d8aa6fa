"""Which ONNX Runtime configuration serves the most images/s to concurrent callers? Side by side, interleaved.

    python scripts/ort_throughput.py [--model resnet18] [--precisions fp32,int8] [--batch 1] [--threads N]
                                     [--duration 10] [--rounds 5]

Configurations, all on the same artifact and inputs (N = --threads, default every core):
- latency:        one session with N intra-op threads, one caller (cnnx's latency mode)
- shared pool:    one session with N intra-op threads, N concurrent callers
- thread/caller:  one session with 1 intra-op thread, N concurrent callers (cnnx's throughput mode)
- session/caller: N sessions with 1 intra-op thread each, one per caller (N copies of the weights)
Reported: images/s (median of the rounds' throughputs) and the median latency per call under that load.
"""

from __future__ import annotations

import argparse
import os
import queue
import tempfile

from cnnx.backends.onnxruntime import OnnxRuntimeRunner
from cnnx.bench import timing
from cnnx.bench.suite import BenchCase, run_rounds
from cnnx.data import load_batch, sample_images
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.hardware import describe, machine_info


class SessionPerCaller(OnnxRuntimeRunner):
    """N one-thread sessions; each call takes an idle one (N callers: one each)."""

    def __init__(self, path, sessions: int):
        self.pool: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(sessions):
            self.pool.put(OnnxRuntimeRunner(path, threads=1))
        self.concurrency = sessions

    def __call__(self, batch):
        runner = self.pool.get()
        try:
            return runner(batch)
        finally:
            self.pool.put(runner)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per configuration, in total")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.threads
    with tempfile.TemporaryDirectory(prefix="cnnx-ort-throughput-") as tmp:
        results = export_model(ExportOptions(args.model, precisions=tuple(args.precisions.split(",")), out_dir=tmp,
                                             target="onnx", calib_data="samples", check=False))
        spec_pre = results[0].manifest.preprocess
        photos = load_batch(sample_images(), spec_pre)
        x = photos[:1].repeat(args.batch, axis=0)
        timed = []
        for result in results:
            precision = result.manifest.precision
            configs = {
                "latency (1 caller, N threads)": (OnnxRuntimeRunner(result.path, threads=n), 1),
                "shared pool (N callers, N threads)": (OnnxRuntimeRunner(result.path, threads=n), n),
                "thread/caller (N callers, 1 thread)": (OnnxRuntimeRunner(result.path, threads=n, mode="throughput"), n),
                "session/caller (N sessions)": (SessionPerCaller(result.path, n), n),
            }
            for label, (runner, callers) in configs.items():
                block = (lambda r, c: lambda seconds, calls: r.run_concurrently(x, c, seconds, calls))(runner, callers)
                case = BenchCase("onnxruntime", precision, args.batch, "ok", reason=label, callers=callers)
                timed.append((case, timing.RoundTimer(block, args.batch, 200, args.duration, 10, args.rounds), None))
        run_rounds(timed, args.rounds, progress=lambda _: None)
    print(f"machine: {describe(machine_info(n))}")
    print(f"{args.model}, batch {args.batch}, N = {n}, {args.rounds} interleaved rounds of "
          f"{args.duration / args.rounds:.1f} s")
    for case, _, _ in timed:
        s = case.latency
        print(f"  {case.precision:5s} {case.reason:38s} {s['images_per_s_of_rounds']:8.1f} images/s   "
              f"median {s['median_of_rounds_ms']:7.2f} ms/call   rounds "
              f"{', '.join(f'{v:.1f}' for v in s['round_images_per_s'])}")


if __name__ == "__main__":
    main()
