"""Where does int8 leave speed on the table? Per-layer profiles from the runtimes themselves.

    pip install -e ".[bench]"     # nncf, for OpenVINO's own int8 of the same fp32 file
    python scripts/int8_profile.py [--model resnet50] [--threads N] [--runs 40] [--batch 1] [--out DIR]
                                   [--doc docs/results/int8_profile.md]

Profiles, side by side in one process, runs alternating between the models so that a busy machine slows
them alike (per-layer medians over --runs inferences):
- OpenVINO (CPU plugin, PERF_COUNT, the LATENCY hint and f32 inference precision that `cnnx bench` uses):
  cnnx's int8 Q/DQ ONNX in the CPU form and NNCF's int8 of the same fp32 file (`nncf.quantize`, the same
  64 calibration tensors). Per executed node: time, kernel (exec type), runtime precision, and the original
  layers fused into it (the compiled model's runtime graph, `originalLayersNames`): a Q/DQ pair that stops
  a fusion shows up as a separate node, a layer that stays in float as an f32/bf16 runtime precision.
- ONNX Runtime (CPU provider, `SessionOptions.enable_profiling`): cnnx's int8 and fp32 files, per node.
- Recipe experiments: the same cpu-form quantization from the same calibration cache with one change each
  (the logits left in float: ORT's `OpTypesToExcludeOutputQuantization`; the network input quantized as
  symmetric int8, as NNCF does: `TensorQuantOverrides`; both; the first conv left in float:
  `nodes_to_exclude`), profiled on both runtimes, with their held-out SQNR next to the shipped form's and
  NNCF's (deterministic: not affected by a busy machine).
The generated tables replace the block between the INT8PROFILE markers of --doc; the text around them (the
findings) is kept. Relative shares are meaningful on a busy machine; absolute times are not.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

from bench_zoo import fmt, held_out_sqnr, nncf_int8  # scripts/ is on sys.path when this file runs
from cnnx.backends.onnxruntime import OnnxRuntimeRunner
from cnnx.backends.openvino import OpenVinoRunner
from cnnx.bench.suite import Workload
from cnnx.data import load_batch, sample_images
from cnnx.export.calibration import load_calibration
from cnnx.export.int8 import layer_macs, method_enum
from cnnx.export.qdq_forms import cpu_recipe, ort_quantize_options
from cnnx.hardware import achieved_tops, describe, machine_info, peak_compute
from cnnx.manifest import OnnxManifest, read_manifest

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("<!-- INT8PROFILE:BEGIN -->", "<!-- INT8PROFILE:END -->")
BLOCK = 5  # profiled runs of one model in a row, after one uncounted run
CONV_NAME = re.compile(r"node_(?:Conv|Gemm)_\d+")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class OpenVinoProfile:
    """One compiled model with per-layer performance counters and its runtime graph."""

    def __init__(self, label: str, path: Path, threads: int | None):
        self.label = label
        self.runner = OpenVinoRunner(path, threads=threads, config={"PERF_COUNT": True})
        self.request = self.runner.compiled.create_infer_request()
        self.times: dict[str, list[float]] = collections.defaultdict(list)
        self.kernel: dict[str, str] = {}
        self.nodes = {}  # friendly name -> runtime graph info
        for op in self.runner.compiled.get_runtime_model().get_ordered_ops():
            info = {k: v.astype(str) for k, v in op.get_rt_info().items()
                    if k in ("layerType", "runtimePrecision", "outputPrecisions", "originalLayersNames")}
            self.nodes[op.get_friendly_name()] = info

    def run(self, x: np.ndarray, counted: bool = True) -> None:
        self.request.infer({0: x})
        if not counted:
            return
        for p in self.request.profiling_info:
            if str(p.status).endswith("EXECUTED") and not str(p.status).endswith("NOT_RUN"):
                self.times[p.node_name].append(p.real_time.total_seconds() * 1000)
                self.kernel[p.node_name] = p.exec_type

    def layers(self) -> list[dict]:
        """Executed nodes with their median time, heaviest first."""
        rows = []
        for name, values in self.times.items():
            info = self.nodes.get(name, {})
            fused = [n for n in info.get("originalLayersNames", "").split(",") if n]
            rows.append({"name": name, "type": info.get("layerType", "?"), "kernel": self.kernel[name],
                         "precision": f"{info.get('runtimePrecision', '?')} -> {info.get('outputPrecisions', '?')}",
                         "ms": statistics.median(values), "fused": fused})
        return sorted(rows, key=lambda r: -r["ms"])


class OnnxRuntimeProfile:
    def __init__(self, label: str, path: Path, threads: int | None, folder: Path):
        self.label = label
        self.runner = OnnxRuntimeRunner(path, threads=threads, options={
            "enable_profiling": True, "profile_file_prefix": str(folder / label.replace(" ", "_"))})

        self.counted: list[bool] = []  # per run, in order: whether it counts

    def run(self, x: np.ndarray, counted: bool = True) -> None:
        self.runner(x)
        self.counted.append(counted)

    def layers(self) -> list[dict]:
        """Per node, the median over the counted runs (ORT's profile records every run, in order)."""
        events = json.loads(Path(self.runner.session.end_profiling()).read_text())
        times, ops = collections.defaultdict(list), {}  # in execution order
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                name = e["name"][:-len("_kernel_time")]
                times[name].append(e["dur"] / 1000)
                ops[name] = e["args"].get("op_name", "?")
        rows = []
        for name, values in times.items():
            kept = [v for v, keep in zip(values, self.counted) if keep] if len(values) == len(self.counted) else values
            rows.append({"name": name, "type": ops[name], "ms": statistics.median(kept), "order": len(rows)})
        return sorted(rows, key=lambda r: -r["ms"])


def by_kind(rows: list[dict], keys: tuple[str, ...]) -> list[str]:
    total = sum(r["ms"] for r in rows)
    groups = collections.defaultdict(lambda: [0.0, 0])
    for r in rows:
        groups[tuple(r[k] for k in keys)][0] += r["ms"]
        groups[tuple(r[k] for k in keys)][1] += 1
    lines = [f"| {' | '.join(keys)} | nodes | ms | share |", "|" + "---|" * len(keys) + "---:|---:|---:|"]
    for kind, (ms, count) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {' | '.join(kind)} | {count} | {ms:.3f} | {100 * ms / total:.1f}% |")
    return lines + [f"| **total** | {'| ' * (len(keys) - 1)}{len(rows)} | {total:.2f} | 100% |"]


def fused_summary(fused: list[str]) -> str:
    """The original layers folded into an executed node, shortened: conv/add names and Q/DQ counts."""
    named = [n for n in fused if CONV_NAME.fullmatch(n) or n.startswith("node_add") or n.startswith("node_")]
    quant = sum("Quantize" in n or "fq_output" in n for n in fused)
    return ", ".join(dict.fromkeys(named)) + (f" + {quant} quantize" if quant else "")


def top_layers(rows: list[dict], count: int, macs: dict[str, int], batch: int, peak) -> list[str]:
    """The heaviest nodes, with the MACs of the conv/FC layer in them and how far from the int8 peak they run."""
    total = sum(r["ms"] for r in rows)
    lines = ["| node | type | kernel | precision in -> out | ms | share | MMACs | % of int8 peak | fused into it |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows[:count]:
        layer = next((n.split("/")[0] for n in r["fused"] if n.split("/")[0] in macs), None)
        mmacs = macs[layer] * batch / 1e6 if layer else None
        fraction = achieved_tops(mmacs / 1e3, 1, r["ms"]) / peak.tops if mmacs and peak else None
        lines.append(f"| `{r['name'][:48]}` | {r['type']} | {r['kernel']} | {r['precision']} | {r['ms']:.3f} "
                     f"| {100 * r['ms'] / total:.1f}% | {fmt(mmacs, '.0f')} | {fmt(fraction and 100 * fraction, '.1f', '%')} "
                     f"| {fused_summary(r['fused'])} |")
    return lines


def float_layers(rows: list[dict]) -> list[str]:
    """Executed nodes that do not run in int8 (runtime precision f32/bf16)."""
    lines = ["| node | type | kernel | precision in -> out | ms | from |", "|---|---|---|---|---:|---|"]
    for r in rows:
        if r["precision"].split(" -> ")[0] not in ("u8", "i8") and r["type"] not in ("Input", "Output", "Const"):
            lines.append(f"| `{r['name'][:48]}` | {r['type']} | {r['kernel']} | {r['precision']} | {r['ms']:.3f} "
                         f"| {', '.join(r['fused'])[:90]} |")
    return lines


def conv_comparison(cnnx_rows: list[dict], nncf_rows: list[dict], count: int) -> list[str]:
    """The same conv/FC layers (by their ONNX node names, which both graphs keep) in both int8 models."""
    def by_layer(rows):
        found = {}
        for r in rows:
            for name in r["fused"]:
                if CONV_NAME.fullmatch(name.split("/")[0]):
                    found.setdefault(name.split("/")[0], r)
        return found

    ours, theirs = by_layer(cnnx_rows), by_layer(nncf_rows)
    common = [n for n in ours if n in theirs]
    total_ours, total_theirs = sum(ours[n]["ms"] for n in common), sum(theirs[n]["ms"] for n in common)
    common.sort(key=lambda n: -(ours[n]["ms"] - theirs[n]["ms"]))
    lines = [f"{len(common)} conv/FC layers in both; their time: cnnx {total_ours:.2f} ms, NNCF {total_theirs:.2f} ms "
             f"(ratio {total_ours / total_theirs:.2f}). The layers where cnnx's int8 loses most, then where it gains "
             "most:", "",
             "| layer | cnnx kernel | cnnx in -> out | cnnx ms | NNCF kernel | NNCF in -> out | NNCF ms | cnnx / NNCF |",
             "|---|---|---|---:|---|---|---:|---:|"]
    for name in common[:count] + common[-max(1, count // 2):]:
        a, b = ours[name], theirs[name]
        lines.append(f"| {name} | {a['kernel']} | {a['precision']} | {a['ms']:.3f} | {b['kernel']} | {b['precision']} "
                     f"| {b['ms']:.3f} | {a['ms'] / b['ms']:.2f} |")
    return lines


def first_layer(ov_rows: dict[str, list[dict]], ort_rows: dict[str, list[dict]]) -> list[str]:
    """The first conv (the stem: 3 input channels) in every profile: its time and share of the total (ONNX
    Runtime renames fused nodes: there, the first conv executed)."""
    names = {n.split("/")[0] for r in ov_rows["cnnx int8"] for n in r["fused"] if CONV_NAME.fullmatch(n.split("/")[0])}
    stem = min(names, key=lambda n: int(n.rsplit("_", 1)[1]))
    lines = [f"The first layer (`{stem}`, 3 input channels) in each profile:", "",
             "| runtime, model | kernel / op | precision in -> out | ms | share of the total |", "|---|---|---|---:|---:|"]
    for runtime, profiles in (("OpenVINO", ov_rows), ("ONNX Runtime", ort_rows)):
        for label, rows in profiles.items():
            total = sum(r["ms"] for r in rows)
            first_conv = min((r for r in rows if "Conv" in r["type"]), key=lambda r: r.get("order", 0))
            for r in rows:
                if stem in [n.split("/")[0] for n in r.get("fused", [])] or r is first_conv and "order" in r:
                    lines.append(f"| {runtime}, {label} | {r.get('kernel', r['type'])} | {r.get('precision', '-')} "
                                 f"| {r['ms']:.3f} | {100 * r['ms'] / total:.1f}% |")
                    break
    return lines


def ort_top(rows: list[dict], count: int) -> list[str]:
    total = sum(r["ms"] for r in rows)
    lines = ["| node | op | ms | share |", "|---|---|---:|---:|"]
    lines += [f"| `{r['name'][:56]}` | {r['type']} | {r['ms']:.3f} | {100 * r['ms'] / total:.1f}% |" for r in rows[:count]]
    return lines


def recipe_variants(workload: Workload) -> dict[str, dict]:
    """Variants of the cpu-form recipe to profile beside it: label -> quantize_static arguments to change
    (`extra_options` entries are added to the form's own)."""
    from onnxruntime.quantization import QuantType

    fp32 = onnx.load(str(workload.artifacts["fp32"]), load_external_data=False)
    images = fp32.graph.input[0].name
    stem = next(n.name for n in fp32.graph.node if n.op_type == "Conv" and images in n.input)
    logits = {"OpTypesToExcludeOutputQuantization": ["Gemm"]}
    symmetric_input = {"TensorQuantOverrides": {images: [{"quant_type": QuantType.QInt8, "symmetric": True}]}}
    return {"logits in float": {"extra_options": logits},
            "input as symmetric int8": {"extra_options": symmetric_input},
            "logits in float, input as symmetric int8": {"extra_options": {**logits, **symmetric_input}},
            "first conv in float": {"nodes_to_exclude": [stem]}}


def variant_file(workload: Workload, out: Path, label: str, change: dict) -> Path:
    """The cpu-form int8 file again, from the same calibration cache, with `change` to quantize_static's
    arguments."""
    from onnxruntime import quantization as q

    details = read_manifest(workload.artifacts["int8"], OnnxManifest).precision_details
    options = ort_quantize_options(cpu_recipe(details["recipe"]["cpus"]))
    options = {**options, **change, "extra_options": {**options["extra_options"], **change.get("extra_options", {})}}
    path = out / f"{workload.spec.name}-int8-cpu-{re.sub('[^a-z0-9]+', '-', label)}.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the quantizer prints progress
        q.quantize_static(str(workload.artifacts["fp32"]), str(path), None,
                          calibrate_method=method_enum(details["calibration"]["method"]),
                          calibration_cache_path=details["calibration"]["cache"]["path"], **options)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", default=None, help="artifact folder, kept and reused (default: temporary)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "results" / "int8_profile.md"))
    args = parser.parse_args()
    warmup = 5
    with tempfile.TemporaryDirectory(prefix="cnnx-int8-profile-") as tmp:
        out = Path(args.out or tmp)
        workload = Workload(args.model, out, args.threads, "cpu", log, export_kwargs={"calib_data": "samples"})
        workload.prepare_artifacts(("fp32", "int8"))
        nncf_xml, _ = nncf_int8(workload.artifacts["fp32"],
                                load_calibration("samples", workload.spec).tensors, out)
        variants = {f"cnnx int8, {label}": variant_file(workload, out, label, extra)
                    for label, extra in recipe_variants(workload).items()}
        sqnr = {"cnnx int8": held_out_sqnr(workload, nncf_xml)}
        sqnr["NNCF int8"] = {"openvino": sqnr["cnnx int8"].pop("int8-nncf")}
        sqnr.update({label: held_out_sqnr(workload, None, path) for label, path in variants.items()})
        photos = load_batch(sample_images(), workload.spec.preprocess)
        x = np.ascontiguousarray(np.resize(photos, (args.batch, *photos.shape[1:])))
        openvino = [OpenVinoProfile("cnnx int8", workload.artifacts["int8"], args.threads),
                    OpenVinoProfile("NNCF int8", nncf_xml, args.threads),
                    *(OpenVinoProfile(label, path, args.threads) for label, path in variants.items())]
        onnxruntime = [OnnxRuntimeProfile("cnnx int8", workload.artifacts["int8"], args.threads, Path(tmp)),
                       OnnxRuntimeProfile("cnnx fp32", workload.artifacts["fp32"], args.threads, Path(tmp)),
                       *(OnnxRuntimeProfile(label, path, args.threads, Path(tmp)) for label, path in variants.items())]
        for profile in openvino + onnxruntime:
            for _ in range(warmup):
                profile.run(x, counted=False)
        log(f"{args.runs} profiled runs per model, in blocks of {BLOCK} alternating between the models of a runtime")
        for group in (openvino, onnxruntime):  # one runtime at a time: the other's idle threads stay out of it
            for _ in range(-(-args.runs // BLOCK)):
                for profile in group:
                    profile.run(x, counted=False)  # settles caches and thread pools after the other model
                    for _ in range(BLOCK):
                        profile.run(x)
        ov_rows = {p.label: p.layers() for p in openvino}
        macs = layer_macs(onnx.load(str(workload.artifacts["fp32"])))
        ort_rows = {p.label: p.layers() for p in onnxruntime}
    machine = machine_info(args.threads)
    peak = peak_compute("int8", machine["cpu"], args.threads)
    block = [f"Generated by `python scripts/int8_profile.py --model {args.model} --threads {args.threads} --runs {args.runs} "
             f"--batch {args.batch}`. Machine: {describe(machine)}; openvino {machine['versions'].get('openvino')}, "
             f"onnxruntime {machine['versions'].get('onnxruntime')}. Per-node medians over {args.runs} runs per model, in "
             f"blocks of {BLOCK} that alternate between the two models of one runtime (each block after one uncounted "
             "run); one runtime at a time. Totals are sums of per-node times, not latencies.", ""]
    for label, rows in ov_rows.items():
        if label in ("cnnx int8", "NNCF int8"):
            block += [f"### OpenVINO, {label}: time by layer type, kernel and precision", "",
                      *by_kind(rows, ("type", "kernel")), ""]
    block += ["### OpenVINO: the same layers in cnnx's int8 and NNCF's int8", "",
              *conv_comparison(ov_rows["cnnx int8"], ov_rows["NNCF int8"], 10), "",
              "### The first layer", "", *first_layer(ov_rows, ort_rows), ""]
    for label, rows in ov_rows.items():
        if label in ("cnnx int8", "NNCF int8"):
            block += [f"### OpenVINO, {label}: the heaviest nodes", "",
                      *top_layers(rows, 12, macs, args.batch, peak), ""]
        block += [f"### OpenVINO, {label}: executed nodes outside int8", "", *float_layers(rows), ""]
    for label, rows in ort_rows.items():
        if label not in ("cnnx int8", "cnnx fp32"):
            block += [f"### ONNX Runtime, {label}: float nodes", "",
                      *ort_top([r for r in rows if not r["type"].startswith("Q")], 8), ""]
    block += ["### Held-out SQNR against eager fp32 (dB; the 4 held-out photos, seeded weights)", "",
              "| model | ONNX Runtime | OpenVINO |", "|---|---:|---:|",
              *(f"| {label} | {fmt(v.get('onnxruntime'), '.2f')} | {fmt(v.get('openvino'), '.2f')} |"
                for label, v in sqnr.items()), ""]
    totals = ["| runtime, model | sum of per-node medians, ms | vs cnnx int8 as shipped |", "|---|---:|---:|"]
    for runtime, profiles in (("OpenVINO", ov_rows), ("ONNX Runtime", ort_rows)):
        base = sum(r["ms"] for r in profiles["cnnx int8"])
        totals += [f"| {runtime}, {label} | {sum(r['ms'] for r in rows):.2f} | {sum(r['ms'] for r in rows) / base:.2f} |"
                   for label, rows in profiles.items()]
    block[2:2] = ["### Totals (same runs as every table below)", "", *totals, ""]
    for label, rows in ort_rows.items():
        if label in ("cnnx int8", "cnnx fp32"):
            block += [f"### ONNX Runtime, {label}: time by operator", "", *by_kind(rows, ("type",)), ""]
    block += ["### ONNX Runtime, cnnx int8: the heaviest nodes", "", *ort_top(ort_rows["cnnx int8"], 12), ""]
    doc = Path(args.doc)
    text = doc.read_text() if doc.is_file() else f"# Where int8 leaves speed on the table\n\n{MARKERS[0]}\n{MARKERS[1]}\n"
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    doc.write_text(text[:start] + "\n" + "\n".join(block) + "\n" + text[end:])
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
