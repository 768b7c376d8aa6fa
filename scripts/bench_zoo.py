"""Every zoo model in fp32, bf16 and int8 on ONNX Runtime and OpenVINO, at batch 1 and 32, against eager
PyTorch fp32 and OpenVINO's own NNCF int8 of the same fp32 file: tables, JSON and a plot in docs/results/.

    pip install -e ".[bench]"          # nncf (no torch: it quantizes OpenVINO models)
    python scripts/bench_zoo.py [--models a,b] [--threads N] [--duration 5] [--rounds 5] [--batches 1,32]
                                [--modes latency[,throughput]] [--out DIR] [--resume] [--docs DIR]

Per model, in one process and one interleaved run (cnnx bench: every case once per round, medians of the
round medians): eager PyTorch fp32 (the baseline); cnnx's fp32 ONNX on ONNX Runtime and OpenVINO, with
OpenVINO's bf16 inference hint; cnnx's int8 Q/DQ ONNX in the CPU form (`<model>-int8-cpu.onnx`, calibrated on
the shipped photos: 6 photos augmented to 64 tensors) on both; and NNCF's int8 (`nncf.quantize` of the same
fp32 file read by OpenVINO, calibrated on the same 64 tensors, default settings) on OpenVINO, the anchor.
SQNR against eager fp32 on the 4 held-out sample photos (`cnnx.data.sample_split`), which neither calibration
saw. Roofline: the model's MACs (ModelSpec.gmacs) per second against the machine's peak for the precision
(`cnnx.hardware.peak_compute`, which states its assumptions). Seeded weights: speed does not depend on the
weight values; SQNR does (see docs/guides/int8.md).

Targets, judged per model at batch 1: the best int8 artifact >= 3x its own fp32 ONNX Runtime latency, and
no slower than NNCF-native. The script prints where each is met and not.

Artifacts go to --out (default: a temporary folder); with --out they are reused by later runs, and with
--resume a model whose results are already in --out/bench-zoo/ is not measured again (results are saved
after each model, so an interrupted run resumes where it stopped).

Cost: every case of a model is alive at once (interleaving), so memory peaks with the largest models at batch
32: 8.5 GB for VGG-11 (each session keeps its batch-32 activations). Time on 2 cores, busy machine: ResNet-50
4 min, VGG-11 4.5 min (export and calibration, NNCF, SQNR, 14 cases x 5 s); about 1.5 hours for the zoo on
a quiet machine, twice the timed part with --modes latency,throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cnnx import list_models, parity
from cnnx.backends.onnxruntime import OnnxRuntimeRunner
from cnnx.backends.openvino import OpenVinoRunner
from cnnx.bench.suite import Workload, run_bench
from cnnx.data import load_batch, sample_split
from cnnx.export.calibration import load_calibration
from cnnx.hardware import achieved_tops, describe, peak_compute
from cnnx.models.registry import get_spec

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
NNCF = "int8-nncf"  # the label of NNCF's model in the bench report
# (backend, precision) columns of the full table, in order
COLUMNS = (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
           ("openvino", "bf16"), ("openvino", "int8"), ("openvino", NNCF))
SHORT = {"torch": "eager", "onnxruntime": "ORT", "openvino": "OV"}
INT8_OVER_FP32_TARGET = 3.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def nncf_int8(fp32_path: Path, calib_tensors: np.ndarray, out: Path) -> tuple[Path, float]:
    """NNCF's int8 of the fp32 ONNX file as OpenVINO reads it, saved as IR beside it; reused when the fp32
    file and the calibration tensors are the same. Returns (the .xml, seconds spent quantizing)."""
    import nncf
    import openvino as ov

    from cnnx.artifacts import sha256_file

    xml = out / fp32_path.name.replace("-fp32.onnx", "-int8-nncf.xml")
    record = {"fp32_sha256": sha256_file(fp32_path), "nncf": nncf.__version__,
              "calibration": hashlib.sha256(np.ascontiguousarray(calib_tensors).tobytes()).hexdigest()}
    stamp = xml.with_suffix(".json")
    if xml.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == record:
        return xml, 0.0
    start = time.perf_counter()
    model = ov.Core().read_model(str(fp32_path))
    quantized = nncf.quantize(model, nncf.Dataset([t[None] for t in calib_tensors]), subset_size=len(calib_tensors))
    ov.save_model(quantized, str(xml))
    stamp.write_text(json.dumps(record))
    return xml, time.perf_counter() - start


def held_out_sqnr(workload: Workload, nncf_xml: Path | None, int8: Path | None = None) -> dict:
    """SQNR (dB) against eager fp32 on the held-out photos: cnnx's int8 (or the file `int8`) on both runtimes,
    NNCF's on OpenVINO."""
    import torch

    photos = load_batch(sample_split()[1], workload.spec.preprocess)
    with torch.inference_mode():
        reference = workload.eager(torch.from_numpy(photos)).numpy()
    int8 = int8 or workload.artifacts["int8"]
    outputs = {"onnxruntime": OnnxRuntimeRunner(int8)(photos), "openvino": OpenVinoRunner(int8)(photos)}
    if nncf_xml:
        outputs[NNCF] = OpenVinoRunner(nncf_xml)(photos)
    return {name: parity.compare(reference, out)["sqnr_db"] for name, out in outputs.items()}


def measure(name: str, args, out: Path) -> dict:
    """One model: artifacts, NNCF's model, SQNR, then every case interleaved in one bench run."""
    started = time.perf_counter()
    workload = Workload(name, out, args.threads, "cpu", log, batches=args.batches,
                        export_kwargs={"calib_data": "samples"})
    workload.prepare_artifacts(("fp32", "int8"))  # exactly what run_bench reuses below
    nncf_xml, nncf_s = None, None
    if not args.no_nncf:
        log(f"{name}: NNCF int8")
        calib = load_calibration("samples", workload.spec)
        nncf_xml, nncf_s = nncf_int8(workload.artifacts["fp32"], calib.tensors, out)
    sqnr = held_out_sqnr(workload, nncf_xml)
    del workload  # its eager model and runners; run_bench builds its own
    report = run_bench(name, backends=BACKENDS, precisions=PRECISIONS, batches=args.batches, threads=args.threads,
                       duration_s=args.duration, min_iters=args.min_iters, rounds=args.rounds, modes=args.modes,
                       device="cpu", out_dir=out, export_kwargs={"calib_data": "samples"},
                       extra_artifacts={NNCF: ("openvino", nncf_xml)} if nncf_xml else None, progress=log)
    return {"model": name, "report": report.to_dict(), "sqnr_db": sqnr, "nncf_quantize_s": nncf_s,
            "seconds": time.perf_counter() - started}


def cases(result: dict, mode: str = "latency") -> dict:
    """(backend, precision, batch) -> the latency stats of the cases that ran, in `mode`."""
    return {(c["backend"], c["precision"], c["batch"]): c["latency"] for c in result["report"]["cases"]
            if c["status"] == "ok" and c["mode"] == mode}


def ms(stats: dict | None) -> float | None:
    return stats["median_of_rounds_ms"] if stats else None


def summarize(result: dict, machine: dict, threads: int | None) -> dict:
    """The columns of the summary table for one model (None where a case did not run)."""
    spec = get_spec(result["model"])
    timed = cases(result)
    own = {k: v for k, v in timed.items() if k[0] != "torch" and k[1] != NNCF}  # cnnx's artifacts
    eager = ms(timed.get(("torch", "fp32", 1)))
    summary = {"model": spec.name, "gmacs": spec.gmacs, "eager_ms": eager}
    nncf = ms(timed.get(("openvino", NNCF, 1)))
    at_b1 = {k: ms(v) for k, v in own.items() if k[2] == 1}
    if at_b1:
        best = min(at_b1, key=at_b1.get)
        summary.update(best=f"{best[0]} {best[1]}", best_ms=at_b1[best],
                       speedup=eager / at_b1[best] if eager else None,
                       best_vs_nncf=nncf / at_b1[best] if nncf else None)
    int8 = {k: v for k, v in at_b1.items() if k[1] == "int8"}
    ort_fp32 = at_b1.get(("onnxruntime", "fp32", 1))
    if int8:
        best8 = min(int8, key=int8.get)
        rounds = [timed[key]["round_medians_ms"] for key in (best8, ("openvino", NNCF, 1)) if key in timed]
        summary.update(best_int8=best8[0], best_int8_ms=int8[best8], nncf_ms=nncf,
                       int8_vs_ort_fp32=ort_fp32 / int8[best8] if ort_fp32 else None,
                       int8_vs_nncf=nncf / int8[best8] if nncf else None,
                       # the two cases' round medians overlap: their difference is within this run's noise
                       int8_nncf_overlap=len(rounds) == 2 and max(map(min, rounds)) <= min(map(max, rounds)),
                       sqnr_int8=result["sqnr_db"].get(best8[0]), sqnr_nncf=result["sqnr_db"].get(NNCF))
    for batch in sorted({k[2] for k in own}):  # roofline of the best artifact at each batch
        at = {k: ms(v) for k, v in own.items() if k[2] == batch}
        best = min(at, key=at.get)
        tops = achieved_tops(spec.gmacs, batch, at[best])
        peak = peak_compute(best[1], machine["cpu"], threads)
        summary[f"roofline_b{batch}"] = {"case": f"{best[0]} {best[1]}", "tops": tops,
                                         "peak_tops": peak.tops if peak else None,
                                         "fraction": tops / peak.tops if peak else None}
    return summary


def fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def verdicts(summary: dict) -> tuple[str, str]:
    """(int8 >= 3x own ORT fp32, int8 no slower than NNCF): 'met (3.4x)', 'NOT met (2.1x)' or '-'; a slower int8
    whose round medians overlap NNCF's is 'NOT met (0.98x, within the rounds' spread)'."""
    def judge(ratio, target, overlap=False):
        if ratio is None:
            return "-"
        spread = ", within the rounds' spread" if ratio < target and overlap else ""
        return f"{'met' if ratio >= target else 'NOT met'} ({ratio:.2f}x{spread})"
    return (judge(summary.get("int8_vs_ort_fp32"), INT8_OVER_FP32_TARGET),
            judge(summary.get("int8_vs_nncf"), 1.0, summary.get("int8_nncf_overlap", False)))


def summary_table(summaries: list[dict], batches) -> list[str]:
    big = max(batches)
    lines = ["| model | GMACs | eager fp32 b1 ms | best artifact (b1) | ms | vs eager | vs NNCF int8 | best int8 "
             "| int8 vs own ORT fp32 (>= 3x) | int8 vs NNCF (>= 1x) | SQNR int8 / NNCF dB | b1 TOPS (% peak) "
             f"| b{big} TOPS (% peak) |",
             "|---|---:|---:|---|---:|---:|---:|---|---|---|---|---|---|"]
    for s in summaries:
        target3, target_nncf = verdicts(s)
        roof = []
        for batch in (1, big):
            r = s.get(f"roofline_b{batch}")
            roof.append("-" if not r else f"{r['tops']:.2f} ({fmt(r['fraction'] and 100 * r['fraction'], '.1f', '%')}, "
                                          f"{SHORT[r['case'].split()[0]]} {r['case'].split()[1]})")
        lines.append(
            f"| {s['model']} | {s['gmacs']:.2f} | {fmt(s.get('eager_ms'), '.1f')} "
            f"| {s.get('best', '-')} | {fmt(s.get('best_ms'), '.2f')} | {fmt(s.get('speedup'), '.2f', 'x')} "
            f"| {fmt(s.get('best_vs_nncf'), '.2f', 'x')} | {s.get('best_int8', '-')} | {target3} | {target_nncf} "
            f"| {fmt(s.get('sqnr_int8'), '.1f')} / {fmt(s.get('sqnr_nncf'), '.1f')} | {roof[0]} | {roof[1]} |")
    return lines


def full_table(results: list[dict], batch: int, mode: str) -> list[str]:
    """Median ms (latency mode) or images/s (throughput mode) of every case, one row per model."""
    value = "images/s" if mode == "throughput" or batch > 1 else "median ms"
    header = " | ".join(f"{SHORT[b]} {'NNCF int8' if p == NNCF else p}" for b, p in COLUMNS)
    lines = [f"| model | {header} |", "|---|" + "---:|" * len(COLUMNS)]
    for result in results:
        timed = cases(result, mode)
        cells = []
        for backend, precision in COLUMNS:
            stats = timed.get((backend, precision, batch))
            cells.append("-" if not stats else (f"{stats['images_per_s_of_rounds']:.1f}" if value == "images/s"
                                                else f"{stats['median_of_rounds_ms']:.2f}"))
        lines.append(f"| {result['model']} | " + " | ".join(cells) + " |")
    return [f"**Batch {batch}, {mode} mode: {value}**", ""] + lines


def beats_nncf_sentence(summaries: list[dict]) -> str:
    rated = [(s["model"] + (" (within the rounds' spread)" if s.get("int8_nncf_overlap") else ""), s["int8_vs_nncf"])
             for s in summaries if s.get("int8_vs_nncf")]
    if not rated:
        return "NNCF-native int8 was not measured in this run."
    wins = [(m, r) for m, r in rated if r >= 1.0]
    losses = [(m, r) for m, r in rated if r < 1.0]
    text = (f"cnnx's best int8 artifact is no slower than NNCF-native int8 at batch 1 on {len(wins)} of {len(rated)} "
            "models")
    if wins:
        text += " (" + ", ".join(f"{m} {r:.2f}x" for m, r in wins) + ")"
    if losses:
        text += "; slower on " + ", ".join(f"{m} {r:.2f}x" for m, r in losses)
    return text + " (ratio = NNCF latency / cnnx latency; > 1: cnnx is faster)."


def header(machine: dict, args, results: list[dict]) -> list[str]:
    versions = machine["versions"]
    peaks = [p.describe() for p in (peak_compute(x, machine["cpu"], args.threads) for x in PRECISIONS) if p]
    return [f"Machine: {describe(machine)}; onnxruntime {versions.get('onnxruntime')}, openvino "
            f"{versions.get('openvino')}, torch {versions.get('torch')}, nncf {nncf_version()}.",
            f"Settings: {args.threads} threads, {args.rounds} interleaved rounds, {args.duration:g} s timed per case "
            f"(in total), batches {', '.join(map(str, args.batches))}; seeded weights; "
            f"{sum(r['seconds'] for r in results) / 60:.0f} min in all. Written by `scripts/bench_zoo.py`.",
            "Peaks (roofline): " + "; ".join(peaks) + ". A guest VM's /proc/cpuinfo reports the nominal clock: "
            "turbo raises the real peak, AMX-heavy code may lower it; the AMX/AVX-512 figures assume two 512-bit FMA "
            "units per core (see `cnnx.hardware.PEAK_MACS_PER_CYCLE`). TOPS = 2 x MACs x images / s."]


def nncf_version() -> str:
    try:
        import nncf

        return nncf.__version__
    except ImportError:
        return "not installed"


def write_docs(results: list[dict], args, docs: Path) -> None:
    """docs/results/bench_zoo.md, .json, .png."""
    machine = results[0]["report"]["machine"]
    summaries = [summarize(r, machine, args.threads) for r in results]
    head = header(machine, args, results)
    legend = ("best artifact: cnnx's fastest artifact at batch 1 (ORT/OV x fp32/bf16/int8); vs eager: its speedup "
              "over eager PyTorch fp32; vs NNCF int8: NNCF's latency / its latency (> 1: cnnx faster); best int8: "
              "the faster runtime for cnnx's int8 file; SQNR on the 4 held-out photos (cnnx int8 on that runtime / "
              "NNCF on OpenVINO); TOPS (% peak): achieved by the best artifact at that batch, against the peak of "
              "its precision, with the case.")
    summary = summary_table(summaries, args.batches)
    doc = ["# The zoo on CPU: fp32, bf16, int8, eager PyTorch and NNCF", "", *head, "", legend, "", *summary, "",
           beats_nncf_sentence(summaries), ""]
    for mode in args.modes:
        for batch in args.batches:
            doc += [*full_table(results, batch, mode), ""]
    doc += ["![zoo](bench_zoo.png)", ""]
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "bench_zoo.md").write_text("\n".join(doc))
    (docs / "bench_zoo.json").write_text(json.dumps({"summaries": summaries, "results": results}, indent=1))
    write_plot(results, summaries, docs / "bench_zoo.png", describe(machine))


def write_plot(results: list[dict], summaries: list[dict], path: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({c["batch"] for r in results for c in r["report"]["cases"]})
    fig, axes = plt.subplots(len(batches), 1, figsize=(13, 4.2 * len(batches)), squeeze=False)
    x = np.arange(len(results))
    width = 0.8 / len(COLUMNS)
    for ax, batch in zip(axes[:, 0], batches):
        for i, (backend, precision) in enumerate(COLUMNS):
            values = []
            for result in results:
                timed = cases(result)
                stats, eager = timed.get((backend, precision, batch)), timed.get(("torch", "fp32", batch))
                values.append(eager["median_of_rounds_ms"] / stats["median_of_rounds_ms"] if stats and eager else 0)
            ax.bar(x + i * width, values, width, label=f"{SHORT[backend]} {'NNCF int8' if precision == NNCF else precision}")
        ax.set_xticks(x + width * (len(COLUMNS) - 1) / 2, [r["model"] for r in results], rotation=60, ha="right",
                      fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1, color="grey", linewidth=0.8)
        ax.set_ylabel("speedup over eager fp32 (log)")
        ax.set_title(f"batch {batch}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_targets(summaries: list[dict]) -> None:
    print("targets at batch 1 (best int8 >= 3x own ORT fp32; no slower than NNCF-native):")
    for s in summaries:
        target3, target_nncf = verdicts(s)
        print(f"  {s['model']:22s} int8 ({s.get('best_int8', '-')}) vs ORT fp32: {target3:16s} vs NNCF: {target_nncf}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated (default: the whole zoo)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--modes", default="latency", help="latency, throughput, or latency,throughput")
    parser.add_argument("--duration", type=float, default=5.0, help="timed seconds per case, in total")
    parser.add_argument("--min-iters", type=int, default=5, help="timed calls per case, in total")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="artifact folder, kept and reused (default: temporary)")
    parser.add_argument("--resume", action="store_true", help="reuse results already in --out/bench-zoo/")
    parser.add_argument("--no-nncf", action="store_true", help="leave out NNCF's int8 (no nncf installed)")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "results"), help="where bench_zoo.md/.json/.png go")
    args = parser.parse_args()
    args.batches = tuple(int(b) for b in args.batches.split(","))
    args.modes = tuple(args.modes.split(","))
    names = args.models.split(",") if args.models else [s.name for s in list_models()]
    with tempfile.TemporaryDirectory(prefix="cnnx-bench-zoo-") as tmp:
        out = Path(args.out or tmp)
        saved = out / "bench-zoo"
        saved.mkdir(parents=True, exist_ok=True)
        results = []
        for name in names:
            path = saved / f"{name}.json"
            if args.resume and path.is_file():
                results.append(json.loads(path.read_text()))
                continue
            result = measure(name, args, out)
            path.write_text(json.dumps(result))
            results.append(result)
            summary = summarize(result, result["report"]["machine"], args.threads)
            log(f"{name}: {result['seconds']:.0f} s; best {summary.get('best')} {fmt(summary.get('best_ms'), '.2f')} ms, "
                f"{fmt(summary.get('speedup'), '.2f', 'x')} eager; targets: {'; '.join(verdicts(summary))}")
    write_docs(results, args, Path(args.docs))
    print_targets([summarize(r, results[0]["report"]["machine"], args.threads) for r in results])


if __name__ == "__main__":
    main()
