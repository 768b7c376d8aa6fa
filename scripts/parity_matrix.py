"""Export every zoo model in fp32 and fp16, check each artifact, and write the parity table.

    python scripts/parity_matrix.py [--out DIR] [--models a,b,...] [--markdown docs/results/parity.md]

The README's parity thresholds are justified by this table: fp32 artifacts differ from eager PyTorch by
float rounding only, fp16 artifacts by fp16 rounding. Models are seeded (no checkpoint)."""

import argparse
import json
import tempfile
import time
from pathlib import Path

from cnnx import list_models
from cnnx.export.pipeline import ExportOptions, export_model
from docs_blocks import stamp  # scripts/ is on sys.path when a script runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=None, help="comma-separated names (default: the whole zoo)")
    parser.add_argument("--markdown", default="docs/results/parity.md")
    parser.add_argument("--json", default="docs/results/parity.json")
    args = parser.parse_args()
    names = args.models.split(",") if args.models else [s.name for s in list_models()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            start = time.perf_counter()
            results = export_model(ExportOptions(name, precisions=("fp32", "fp16"), out_dir=tmp))
            for r in results:
                rows.append({"model": name, "precision": r.manifest.precision, "passed": r.passed,
                             "fp32_nodes": r.manifest.precision_details.get("fp32_node_count", 0),
                             "mib": round(r.manifest.artifact_bytes / 2**20, 1), **r.check.metrics,
                             "timings_s": r.manifest.timings_s})
            print(f"{name}: {time.perf_counter() - start:.1f}s", {r.manifest.precision: r.passed for r in results},
                  flush=True)
    Path(args.json).write_text(json.dumps(rows, indent=1))
    lines = ["# Parity of the zoo: fp32 and fp16 against eager PyTorch", "",
             "Every zoo model's ONNX artifacts against eager PyTorch fp32 (ONNX Runtime CPU, seeded weights, "
             "10 sample photos + 2 random inputs, batch 1 and 12). Written by `scripts/parity_matrix.py`.", "",
             stamp(), "",
             "| model | precision | MiB | fp32 nodes kept | max_rel | cosine | SQNR dB | top-1 | top-5 | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['precision']} | {r['mib']} | {r['fp32_nodes']} | {r['max_rel']:.1e} "
                     f"| {r['cosine']:.6f} | {r['sqnr_db']:.1f} | {r['top1']:.2f} | {r['top5']:.2f} "
                     f"| {'pass' if r['passed'] else 'FAIL'} |")
    Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
