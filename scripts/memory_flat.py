"""Peak memory of `cnnx predict FOLDER` and `cnnx check --images FOLDER` for a small and a large folder.

Both commands stream the folder in bounded batches, so their peak RSS should not grow with the number of
images. Each command runs in its own process; its peak RSS is VmHWM from /proc (ru_maxrss would also count the
memory of this script at the moment it forked the process). The images are the shipped sample photos,
re-encoded as 640x480 JPEGs and repeated to fill the folder.

    python scripts/memory_flat.py --counts 100,2000 --model nin
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from cnnx.data import sample_images
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.hardware import describe, machine_info

# Runs the cnnx command line in this process and prints the process's peak RSS (KiB) to stderr.
MEASURE = """
import runpy, sys
sys.argv = ["cnnx", *sys.argv[1:]]
try:
    runpy.run_module("cnnx", run_name="__main__")
except SystemExit:
    pass
peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("PEAK_RSS_KIB", peak, file=sys.stderr)
"""


def make_folder(folder: Path, count: int) -> None:
    photos = [Image.open(p).convert("RGB").resize((640, 480)) for p in sample_images()]
    folder.mkdir(parents=True)
    for i in range(count):
        photos[i % len(photos)].save(folder / f"img{i:05d}.jpg", quality=90)


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one cnnx command."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    line = next(line for line in run.stderr.splitlines() if line.startswith("PEAK_RSS_KIB"))
    if run.returncode not in (0, 1):
        raise RuntimeError(f"cnnx {' '.join(args)} failed: {run.stderr[-2000:]}")
    return int(line.split()[1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="100,2000")
    parser.add_argument("--model", default="nin")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnx-memory-") as tmp:
        tmp = Path(tmp)
        [artifact] = export_model(ExportOptions(args.model, out_dir=tmp / "export", check=False, target="onnx"))
        for count in (int(c) for c in args.counts.split(",")):
            folder = tmp / f"images-{count}"
            make_folder(folder, count)
            for command in (["predict", str(artifact.path), str(folder), "--json"],
                            ["check", str(artifact.path), "--images", str(folder), "--json"]):
                mib, seconds = peak_rss(command)
                rows.append({"command": f"cnnx {command[0]}", "images": count, "peak_rss_mib": round(mib),
                             "seconds": round(seconds, 1)})
                print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {describe(machine_info())}; model {args.model}, fp32 ONNX on ONNX Runtime")
    print("| command | images | peak RSS (MiB) | seconds |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| `{row['command']}` | {row['images']} | {row['peak_rss_mib']} | {row['seconds']} |")


if __name__ == "__main__":
    main()
