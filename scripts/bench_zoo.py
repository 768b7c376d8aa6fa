"""Every zoo model on the CPU backends at batch 1 and 32: a markdown table and a PNG plot under docs/.

    python scripts/bench_zoo.py [--models a,b] [--precisions fp32] [--threads N] [--duration 1]

Each model's backends run side by side in one process on the same inputs (cnnx bench); the table shows
median latency, throughput and the speedup against eager PyTorch fp32 at the same batch, and names the
machine. Seeded weights: speed does not depend on the weight values."""

import argparse
import json
import os
import tempfile
from pathlib import Path

from cnnx import list_models
from cnnx.bench.suite import run_bench
from cnnx.hardware import describe

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None)
    parser.add_argument("--backends", default="torch,onnxruntime,openvino")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--min-iters", type=int, default=3)
    args = parser.parse_args()
    names = args.models.split(",") if args.models else [s.name for s in list_models()]
    reports = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            report = run_bench(name, backends=tuple(args.backends.split(",")),
                               precisions=tuple(args.precisions.split(",")),
                               batches=tuple(int(b) for b in args.batches.split(",")), threads=args.threads,
                               duration_s=args.duration, min_iters=args.min_iters, out_dir=tmp,
                               export_kwargs={"calib_data": "samples"})
            reports.append(report)
            print(name, {f"{c.backend}/{c.precision}/b{c.batch}": round(c.latency["median_ms"], 2)
                         for c in report.cases if c.status == "ok"}, flush=True)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "bench_zoo.json").write_text(json.dumps([r.to_dict() for r in reports], indent=1))
    write_table(reports, DOCS / "bench_zoo.md")
    write_plot(reports, DOCS / "bench_zoo.png")


def write_table(reports, path: Path) -> None:
    lines = [f"Median latency (ms) and images/s per backend; speedup vs eager PyTorch fp32 at the same batch. "
             f"Machine: {describe(reports[0].machine)}. Written by `scripts/bench_zoo.py`.", "",
             "| model | backend | precision | batch | median ms | images/s | speedup |",
             "|---|---|---|---:|---:|---:|---:|"]
    for report in reports:
        for c in report.cases:
            if c.status == "ok":
                lines.append(f"| {report.model} | {c.backend} | {c.precision} | {c.batch} "
                             f"| {c.latency['median_ms']:.2f} | {c.latency['images_per_s']:.1f} | {c.speedup:.2f}x |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(reports, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    batches = sorted({c.batch for r in reports for c in r.cases})
    series = sorted({(c.backend, c.precision) for r in reports for c in r.cases if c.status == "ok"})
    fig, axes = plt.subplots(len(batches), 1, figsize=(12, 4 * len(batches)), squeeze=False)
    for ax, batch in zip(axes[:, 0], batches):
        x = np.arange(len(reports))
        width = 0.8 / max(len(series), 1)
        for i, (backend, precision) in enumerate(series):
            values = [next((c.latency["images_per_s"] for c in r.cases if c.status == "ok" and c.batch == batch
                            and (c.backend, c.precision) == (backend, precision)), 0) for r in reports]
            ax.bar(x + i * width, values, width, label=f"{backend} {precision}")
        ax.set_xticks(x + width * (len(series) - 1) / 2, [r.model for r in reports], rotation=60, ha="right",
                      fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("images/s (log)")
        ax.set_title(f"batch {batch}")
        ax.legend(fontsize=8)
    fig.suptitle(describe(reports[0].machine), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
