"""Time `export + check` of one model in fp32 and fp16 (the README's export timing).

    python scripts/time_export.py [--model resnet50] [--precisions fp32,fp16]
"""

import argparse
import os
import tempfile
import time

from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.hardware import describe, machine_info


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--precisions", default="fp32,fp16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = export_model(ExportOptions(args.model, precisions=tuple(args.precisions.split(",")), out_dir=tmp))
        total = time.perf_counter() - start
    print(f"machine: {describe(machine_info(os.cpu_count()))}")
    print(f"{args.model} export + check ({args.precisions}): {total:.1f} s in total")
    for stage, seconds in results[-1].manifest.timings_s.items():
        print(f"  {stage:>12}: {seconds:6.1f} s")
    for r in results:
        print(f"  {r.path.name}: parity {'pass' if r.passed else 'FAIL'}")


if __name__ == "__main__":
    main()
