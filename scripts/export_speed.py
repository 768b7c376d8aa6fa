"""`cnnx export` against the fastest hand-written pipeline that does the same work, side by side in one run.

    python scripts/export_speed.py [--rounds 3] [--cases resnet50-fp32,fp16 ...]
        [--markdown TABLE.md]   (the table alone: paste it into docs/results/export_speed.md)
    python scripts/export_speed.py --exporters [MODEL ...]   # the exporters alone, for the choice of exporter

Each case runs both ways in fresh processes (what a user waits for: interpreter start, imports, the work),
in interleaved rounds whose order alternates, so both see the same load. A run's wall time is the process's;
its peak memory is that process's own maximum RSS (os.wait4). The hand-written pipeline (`--hand`, below) is:
the same seeded module (cnnx.create_model), the same exporter calls and options as cnnx (torch.onnx.export, the
TorchScript exporter where it exports the model, else dynamo; opset 20, dynamic batch), onnxsim, ONNX Runtime's float16 converter, ONNX Runtime's quantize_static with
the same calibration tensors and Q/DQ options, and one ONNX Runtime parity run per artifact on the same inputs
as cnnx's check (the 10 shipped photos and 2 random inputs; int8: the 4 held-out photos). Both report the same
parity metrics (cnnx.parity.compare), which must agree. Per case the script prints the median wall time and
peak RSS of each, their ratio, and both parity results; the targets (issue 18) are <= 1.25x wall and <= 1.5x
memory.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

CASES = {  # name: (model, precisions, int8 Q/DQ form)
    "resnet50-fp32,fp16": ("resnet50", "fp32,fp16", None),
    "vgg16-fp32,fp16": ("vgg16", "fp32,fp16", None),
    "googlenet-fp16": ("googlenet", "fp16", None),
    "resnet50-int8-cpu": ("resnet50", "int8", "cpu"),
    "resnet50-int8-tensorrt": ("resnet50", "int8", "tensorrt"),
}
CALIB_SIZE = 16
WALL_TARGET, MEMORY_TARGET = 1.25, 1.5


def cnnx_command(model: str, precisions: str, form: str | None, out: Path) -> list[str]:
    command = [sys.executable, "-m", "cnnx", "export", model, "--precision", precisions, "--out", str(out),
               "--target", "onnx", "--json"]
    if form:
        command += ["--calib-data", "samples", "--calib-size", str(CALIB_SIZE), "--int8-target", form]
    return command


def hand_command(model: str, precisions: str, form: str | None, out: Path) -> list[str]:
    return [sys.executable, __file__, "--hand", model, precisions, form or "-", str(out)]


def run_once(command: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of one fresh process."""
    with tempfile.TemporaryFile("w+") as stdout:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        output = stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {process.returncode}")
    return wall, usage.ru_maxrss * 1024, output


def cnnx_parity(output: str) -> dict:
    return {a["manifest"]["precision"]: a["manifest"]["parity"]["per_batch"]
            for a in json.loads(output)["artifacts"]}


def hand_pipeline(model_name: str, precisions: list[str], form: str | None, out: Path) -> dict:
    """The work `cnnx export` does, written by hand with the same libraries; returns parity metrics per
    precision, keyed like cnnx's manifest (per batch size)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import onnxsim
    import torch
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from cnnx import create_model
    from cnnx.data import load_batch, sample_images
    from cnnx.export.calibration import load_calibration
    from cnnx.export.qdq_forms import ort_quantize_options, ranges_of, recipe
    from cnnx.export.qdq_tensorrt import place
    from cnnx.models.registry import get_spec
    from cnnx.parity import compare

    spec = get_spec(model_name)
    model = create_model(model_name)
    photos = load_batch(sample_images(), spec.preprocess)
    noise = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    inputs = np.concatenate([photos, noise])
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    try:  # the fastest exporter where it exports the model (the TorchScript one), else dynamo: as cnnx does
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(2, *spec.input_shape),), buffer, dynamo=False, opset_version=20,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        exported = onnx.load_from_string(buffer.getvalue())
    except Exception:
        exported = torch.onnx.export(model, (torch.zeros(2, *spec.input_shape),), dynamo=True, opset_version=20,
                                     external_data=False, input_names=["images"], output_names=["logits"],
                                     dynamic_shapes=({0: torch.export.Dim("batch")},)).model_proto
    graph, _ = onnxsim.simplify(exported, check_n=0)
    del exported

    def parity(proto_or_path, x, reference) -> dict:
        source = proto_or_path if isinstance(proto_or_path, str) else proto_or_path.SerializeToString()
        session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        return {str(len(x)): compare(reference, session.run(None, {"images": x})[0])}

    results = {}
    if "fp32" in precisions or "int8" in precisions:
        onnx.save(graph, out / "fp32.onnx")
    if "fp32" in precisions:
        results["fp32"] = parity(str(out / "fp32.onnx"), inputs, expected)
    if "fp16" in precisions:
        fp16 = convert_float_to_float16(graph, keep_io_types=True)  # edits `graph` in place: it is not needed after
        onnx.save(fp16, out / "fp16.onnx")
        results["fp16"] = parity(str(out / "fp16.onnx"), inputs, expected)
    if "int8" in precisions:
        calib = load_calibration("samples", spec, CALIB_SIZE)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{"images": calib.tensors[i:i + 4]} for i in range(0, len(calib.tensors), 4)])

            def get_next(self):
                return next(self.batches, None)

        chosen = recipe(form)
        if form == "cpu":
            quantize_static(str(out / "fp32.onnx"), str(out / "int8.onnx"), Reader(), **ort_quantize_options(chosen))
        else:  # ONNX Runtime's calibrator, then NVIDIA's placement (ORT's quantizer cannot place Q/DQ that way)
            from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

            calibrator = create_calibrator(out / "fp32.onnx", augmented_model_path=str(out / "augmented.onnx"),
                                           extra_options={"symmetric": True})
            calibrator.collect_data(Reader())
            save_tensors_data(calibrator.compute_data(), out / "ranges.json")
            onnx.save(place(onnx.load(out / "fp32.onnx"), ranges_of(out / "ranges.json")), out / "int8.onnx")
        with torch.inference_mode():
            held_out = model(torch.from_numpy(calib.holdout)).numpy()
        results["int8"] = parity(str(out / "int8.onnx"), calib.holdout, held_out)
    return results


EXPORTERS = ("torch.export.export", "torch.onnx.export dynamo", "torch.onnx.export torchscript")


def time_exporter(model_name: str, exporter: str) -> float:
    """Seconds of one export call in this (fresh) process: what the exporter alone costs a user's command."""
    import io
    import warnings

    import torch

    from cnnx import create_model
    from cnnx.models.registry import get_spec

    spec = get_spec(model_name)
    model = create_model(model_name)
    example = (torch.zeros(2, *spec.input_shape),)
    batch = {0: torch.export.Dim("batch")}
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    if exporter == "torch.export.export":
        torch.export.export(model, example, dynamic_shapes=(batch,))
    elif exporter == "torch.onnx.export dynamo":
        torch.onnx.export(model, example, dynamo=True, opset_version=20, external_data=False,
                          input_names=["images"], output_names=["logits"], dynamic_shapes=(batch,)).model_proto
    else:  # the TorchScript exporter, deprecated since torch 2.9
        torch.onnx.export(model, example, io.BytesIO(), dynamo=False, opset_version=20, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    return time.perf_counter() - start


def compare_exporters(models: list[str], rounds: int) -> str:
    """The exporter alone, each in a fresh process, interleaved rounds: the numbers behind cnnx's choice."""
    seconds = {(m, e): [] for m in models for e in EXPORTERS}
    for round_index in range(rounds):
        for model in models:
            order = EXPORTERS if round_index % 2 == 0 else EXPORTERS[::-1]
            for exporter in order:
                _, _, output = run_once([sys.executable, __file__, "--time-exporter", model, exporter])
                seconds[model, exporter].append(float(output.strip().splitlines()[-1]))
    lines = ["| model | " + " | ".join(f"{e} s" for e in EXPORTERS) + " |", "|---|" + "---:|" * len(EXPORTERS)]
    for model in models:
        lines.append(f"| {model} | " + " | ".join(f"{statistics.median(seconds[model, e]):.1f}" for e in EXPORTERS)
                     + " |")
    return "\n".join(lines) + "\n"


def agree(ours: dict, theirs: dict) -> bool:
    """The same verdict material: SQNR within 0.5 dB (int8: ranges may differ in the last bit) and equal top-1."""
    for precision, by_batch in theirs.items():
        size, metrics = next(iter(by_batch.items()))
        mine = ours[precision][size]  # the same inputs at the same batch size
        if abs((mine["sqnr_db"] or 0) - (metrics["sqnr_db"] or 0)) > 0.5 or mine["top1"] != metrics["top1"]:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hand", nargs=4, metavar=("MODEL", "PRECISIONS", "FORM", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--time-exporter", nargs=2, metavar=("MODEL", "EXPORTER"), help=argparse.SUPPRESS)
    parser.add_argument("--exporters", nargs="*", metavar="MODEL", default=None,
                        help="Instead: time the exporters alone on these models (default resnet50 vgg16).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--markdown", type=Path, default=None, help="Write the results table (alone) here.")
    parser.add_argument("--json", type=Path, default=None, help="Write every measurement here.")
    args = parser.parse_args()
    if args.hand:
        model, precisions, form, out = args.hand
        result = hand_pipeline(model, precisions.split(","), None if form == "-" else form, Path(out))
        print(json.dumps(result))  # the last line: the exporter prints its progress to stdout
        return
    if args.time_exporter:
        print(time_exporter(*args.time_exporter))
        return

    from cnnx.hardware import describe, machine_info

    machine = describe(machine_info(os.cpu_count()))
    print(f"machine: {machine}", flush=True)
    if args.exporters is not None:
        table = compare_exporters(args.exporters or ["resnet50", "vgg16"], args.rounds)
        print(table)
        if args.markdown:
            args.markdown.write_text(table)
        return
    runs: dict[str, dict[str, list]] = {case: {"cnnx": [], "hand": []} for case in args.cases}
    for round_index in range(args.rounds):
        for case in args.cases:
            model, precisions, form = CASES[case]
            order = ("cnnx", "hand") if round_index % 2 == 0 else ("hand", "cnnx")
            for who in order:
                with tempfile.TemporaryDirectory(prefix="cnnx-speed-") as tmp:
                    make = cnnx_command if who == "cnnx" else hand_command
                    wall, rss, output = run_once(make(model, precisions, form, Path(tmp)))
                parity = cnnx_parity(output) if who == "cnnx" else json.loads(output.strip().splitlines()[-1])
                runs[case][who].append({"wall_s": wall, "peak_rss": rss, "parity": parity})
                print(f"round {round_index + 1} {case:>24} {who:>4}: {wall:6.1f} s, {rss / 2**20:6.0f} MiB",
                      flush=True)
    rows = []
    for case, by in runs.items():
        wall = {who: statistics.median(r["wall_s"] for r in by[who]) for who in by}
        rss = {who: statistics.median(r["peak_rss"] for r in by[who]) for who in by}
        ours, theirs = by["cnnx"][-1]["parity"], by["hand"][-1]["parity"]
        rows.append({"case": case, "cnnx_s": wall["cnnx"], "hand_s": wall["hand"],
                     "wall_ratio": wall["cnnx"] / wall["hand"], "cnnx_rss": rss["cnnx"], "hand_rss": rss["hand"],
                     "memory_ratio": rss["cnnx"] / rss["hand"], "parity_agrees": agree(ours, theirs),
                     "parity": {"cnnx": ours, "hand": theirs}})
    table = render(rows, machine, args.rounds)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rounds": args.rounds, "rows": rows, "runs": runs},
                                        indent=1))


def render(rows: list[dict], machine: str, rounds: int) -> str:
    def sqnr(parity: dict) -> str:  # at the full check batch (cnnx also runs batch 1)
        return ", ".join(f"{p} {b[max(b, key=int)]['sqnr_db']:.1f}" for p, b in parity.items())

    lines = [f"Measured by `scripts/export_speed.py --rounds {rounds}` on {machine}, {time.strftime('%Y-%m-%d')}: "
             "median wall time and peak RSS of fresh processes, interleaved rounds. Targets: wall <= "
             f"{WALL_TARGET}x, memory <= {MEMORY_TARGET}x the hand-written pipeline.", "",
             "| case | cnnx s | by hand s | wall ratio | cnnx MiB | by hand MiB | memory ratio | SQNR dB cnnx | "
             "SQNR dB by hand | parity agrees |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['cnnx_s']:.1f} | {r['hand_s']:.1f} | {r['wall_ratio']:.2f}x | "
                     f"{r['cnnx_rss'] / 2**20:.0f} | {r['hand_rss'] / 2**20:.0f} | {r['memory_ratio']:.2f}x | "
                     f"{sqnr(r['parity']['cnnx'])} | {sqnr(r['parity']['hand'])} | "
                     f"{'yes' if r['parity_agrees'] else 'NO'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
