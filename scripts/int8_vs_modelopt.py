"""cnnx's int8 "tensorrt" Q/DQ form against NVIDIA ModelOpt's ONNX post-training quantizer, on the same fp32 ONNX
files and the same calibration tensors: accuracy on held-out inputs, and where each puts its Q/DQ nodes.

Usage (from the main venv):
    python scripts/int8_vs_modelopt.py [--models resnet18 googlenet-tv ...] [--settings max-fp32 entropy-fp32 ...]
                                       [--work DIR] [--json PATH] [--markdown docs/results/int8-vs-modelopt.md]
    python scripts/int8_vs_modelopt.py --render WORK/results.json [--markdown PAGE]   (tables only, no measuring)

ModelOpt runs in its own venv (it pins onnx and onnxruntime-gpu versions of its own), default .venv-modelopt:
    python3 -m venv .venv-modelopt && .venv-modelopt/bin/pip install --no-deps -r scripts/modelopt-requirements.txt
This script starts itself there with --modelopt-worker (the worker imports numpy and modelopt only, no cnnx).

Per model:
1. cnnx exports fp32 and int8 (int8_target "tensorrt", its default calibration: minmax, 64 tensors for the zoo)
   through the Python API, and int8 again with calib_method "mse" and "auto"; zoo models have seeded weights,
   the digits network is tests/trained_network.py's.
2. The calibration tensors cnnx used (load_calibration, the same call the export makes) are saved to .npy; their
   sha256 must equal the one the int8 manifest records. ModelOpt quantizes the same fp32 file with them, once per
   setting (calibration_method max / entropy, high_precision_dtype fp32 / fp16; ModelOpt's own default is
   entropy + fp16), calibrating on the CPU.
3. Every int8 graph runs in this venv's ONNX Runtime (>= 1.32: older ones truncate in fp16 QuantizeLinear, which
   ModelOpt's fp16 graphs use) on held-out inputs; parity.compare (the metrics of `cnnx check`) against the fp32
   ONNX model, with ORT's graph optimizations off (the Q/DQ arithmetic as the graph writes it: the headline
   numbers) and on (as `cnnx check` runs; ORT then computes in its own int8 kernels, and its WeightBiasQuantization
   pass breaks ModelOpt's fp16 graphs of the digits network). Zoo: the 4 held-out sample photos plus 8
   scikit-image photos that are not among the calibration photos, each in 4 views (cnnx's calibration
   augmentations: plain, mirrored, 80 % center crop, mirrored). Digits: the 1000 held-out digits, with labels.
4. The placement is counted op by op on each graph (see `placement`).
The work folder keeps the exports (cnnx reuses up-to-date ones) and ModelOpt's outputs (reused while the fp32
file, the calibration tensors, the setting and the ModelOpt venv's versions are the same).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "resnet18-digits"  # tests/trained_network.py's resnet18 trained on real MNIST digits
MODELS = ("resnet50", "resnet18", "googlenet-tv", "inception-resnet-v2", DIGITS)
SETTINGS = {  # name: (calibration_method, high_precision_dtype)
    "max-fp32": ("max", "fp32"), "entropy-fp32": ("entropy", "fp32"),
    "max-fp16": ("max", "fp16"), "entropy-fp16": ("entropy", "fp16"),
}
# Held-out scikit-image photos: none of them is a calibration photo (the shipped samples astronaut, brick,
# chelsea (= skimage's cat), coins, grass, hubble_deep_field are; camera, coffee, gravel, rocket are the held-out
# samples, read from cnnx's own files).
SKIMAGE_HELD_OUT = ("immunohistochemistry", "moon", "retina", "stereo_motorcycle", "clock", "cell", "page", "text")
VIEWS = 4  # the first 4 of cnnx's augmentations(): plain, mirrored, 80 % center crop, mirrored
DIGITS_CALIB_SIZE = 80  # as scripts/trained_network.py: 80 of the 100 training digits (every 5th is held out)
BATCH = 16
BOOTSTRAP = 5000  # resamples for the verdict's confidence interval


# --- the ModelOpt side (runs in the ModelOpt venv) ---------------------------------------------------------------

def modelopt_worker(args: argparse.Namespace) -> None:
    from importlib import metadata

    from modelopt.onnx.quantization import quantize

    calib = np.load(args.calib)
    out = Path(args.out)
    report = {"versions": {p: metadata.version(p) for p in ("nvidia-modelopt", "onnxruntime", "onnx", "torch")},
              "settings": {}}
    for name in args.settings:
        method, dtype = SETTINGS[name]
        start = time.perf_counter()
        # calibration_eps=["cpu"]: no CUDA here. Everything else is ModelOpt's default placement (no op types or
        # nodes excluded by us).
        quantize(onnx_path=args.onnx, quantize_mode="int8", calibration_data=calib, calibration_method=method,
                 high_precision_dtype=dtype, calibration_eps=["cpu"], output_path=str(out / f"{name}.onnx"),
                 log_level="WARNING")
        report["settings"][name] = {"calibration_method": method, "high_precision_dtype": dtype,
                                    "seconds": round(time.perf_counter() - start, 1)}
    (out / "worker.json").write_text(json.dumps(report, indent=1))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_modelopt(python: str, fp32: Path, calib: np.ndarray, calib_sha: str, out: Path,
                 settings: list[str]) -> dict:
    """ModelOpt's graphs for `settings`, made in the ModelOpt venv unless an earlier run made them from the same
    inputs. Returns {setting: {"path", "seconds", "versions", ...}}."""
    out.mkdir(parents=True, exist_ok=True)
    versions = subprocess.run([python, "-c", "from importlib import metadata as m; print(m.version('nvidia-modelopt'),"
                               " m.version('onnxruntime'), m.version('onnx'))"],
                              check=True, capture_output=True, text=True).stdout.split()
    key = {"fp32_sha256": sha256_file(fp32), "calibration_sha256": calib_sha, "modelopt_venv": versions}
    done_file = out / "done.json"
    done = json.loads(done_file.read_text()) if done_file.is_file() else {}
    todo = [s for s in settings if done.get(s, {}).get("key") != key or not (out / f"{s}.onnx").is_file()]
    if todo:
        # ModelOpt writes its intermediate files beside its input: give it a link in its own folder
        source = out / "fp32.onnx"
        source.unlink(missing_ok=True)
        try:
            os.link(fp32, source)
        except OSError:
            shutil.copyfile(fp32, source)
        np.save(out / "calibration.npy", calib)
        print(f"  ModelOpt: {', '.join(todo)}", flush=True)
        with open(out / "modelopt.log", "w") as log:
            subprocess.run([python, __file__, "--modelopt-worker", "--onnx", str(source), "--calib",
                            str(out / "calibration.npy"), "--out", str(out), "--settings", *todo],
                           check=True, stdout=log, stderr=subprocess.STDOUT)
        worker = json.loads((out / "worker.json").read_text())
        for s in todo:
            done[s] = {"key": key, **worker["settings"][s], "versions": worker["versions"]}
        done_file.write_text(json.dumps(done, indent=1))
        (out / "calibration.npy").unlink()
        source.unlink()
    return {s: {**done[s], "path": out / f"{s}.onnx"} for s in settings}


# --- placement: what each quantizer put where ---------------------------------------------------------------------

def placement(path: Path) -> dict:
    """Op-by-op Q/DQ placement of a quantized graph. An input counts as quantized when it comes from a
    DequantizeLinear (through Casts, which ModelOpt's fp16 graphs put around tensors); an output when a
    QuantizeLinear reads it."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def source(tensor: str):
        node = producer.get(tensor)
        while node is not None and node.op_type == "Cast":
            node = producer.get(node.input[0])
        return node

    def dq(tensor: str):
        node = source(tensor)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def quantized_from(tensor: str) -> str:
        """The op whose output a DQ'd tensor carries (DQ <- Q <- op)."""
        q = source(dq(tensor).input[0])
        origin = source(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        return origin.op_type if origin is not None else "graph input"

    def constant(tensor: str) -> bool:
        node = source(tensor)
        return tensor in inits or (node is not None and node.op_type == "Constant")

    def output_q(tensor: str) -> list:
        found = []
        for c in consumers[tensor]:
            found += [c] if c.op_type == "QuantizeLinear" else output_q(c.output[0]) if c.op_type == "Cast" else []
        return found

    def scale(node) -> float:
        return round(float(np.ravel(numpy_helper.to_array(inits[node.input[1]]))[0]), 7)

    def weight_storage(tensor: str) -> str:
        """'int8': the file stores int8 weights; 'float32 Q/DQ' (or float16): float weights followed by a Q/DQ pair
        (quantized when the graph runs or the engine is built); 'float32': not quantized."""
        node = dq(tensor)
        if node is None:
            held = inits.get(tensor)
            return onnx.helper.tensor_dtype_to_np_dtype(held.data_type).name if held else "?"
        if node.input[0] in inits:
            return onnx.helper.tensor_dtype_to_np_dtype(inits[node.input[0]].data_type).name
        q = source(node.input[0])
        held = inits.get(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        return (onnx.helper.tensor_dtype_to_np_dtype(held.data_type).name + " Q/DQ") if held else "?"

    ops = Counter(n.op_type for n in graph.node)
    weight_dq = sum(1 for n in graph.node if n.op_type == "DequantizeLinear" and (
        n.input[0] in inits or (source(n.input[0]) is not None and source(n.input[0]).input[0] in inits)))
    convs = [n for n in graph.node if n.op_type == "Conv"]
    adds = [n for n in graph.node if n.op_type == "Add" and not any(constant(i) for i in n.input)]
    add_quantized = Counter(sum(dq(i) is not None for i in n.input) for n in adds)
    add_float_from = Counter(source(i).op_type for n in adds for i in n.input if dq(i) is None and source(i))
    add_q_from = Counter(quantized_from(i) for n in adds for i in n.input if dq(i) is not None)
    concats = []
    for node in (n for n in graph.node if n.op_type == "Concat"):
        scales = {scale(dq(i)) for i in node.input if dq(i) is not None} | {scale(q) for q in output_q(node.output[0])}
        concats.append({"inputs": len(node.input), "quantized_inputs": sum(dq(i) is not None for i in node.input),
                        "output_quantized": bool(output_q(node.output[0])), "scales": len(scales)})
    pools = defaultdict(list)  # MaxPool commutes with Q/DQ; ModelOpt also quantizes the inputs of AveragePool
    for node in graph.node:
        if node.op_type in ("MaxPool", "AveragePool", "GlobalAveragePool"):
            pools[node.op_type].append(node)
    # The classifier: the Gemm/MatMul/Conv that makes the graph's output (through Cast/Reshape/Flatten)
    head = source(graph.output[0].name)
    while head is not None and head.op_type in ("Reshape", "Flatten", "Identity", "Squeeze"):
        head = source(head.input[0])
    head_int8 = head is not None and dq(head.input[0]) is not None and dq(head.input[1]) is not None
    layers = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    return {
        "quantize_nodes": ops["QuantizeLinear"], "dequantize_nodes": ops["DequantizeLinear"],
        "weight_dequantize_nodes": weight_dq,
        "conv": {"count": len(convs), "input_quantized": sum(dq(n.input[0]) is not None for n in convs),
                 "weight_quantized": sum(dq(n.input[1]) is not None for n in convs)},
        "add": {"count": len(adds), "both_inputs_quantized": add_quantized[2], "one_input_quantized": add_quantized[1],
                "no_input_quantized": add_quantized[0],
                "output_quantized": sum(bool(output_q(n.output[0])) for n in adds),
                "quantized_inputs_from": dict(add_q_from), "float_inputs_from": dict(add_float_from)},
        "concat": {"count": len(concats), "inputs": sum(c["inputs"] for c in concats),
                   "quantized_inputs": sum(c["quantized_inputs"] for c in concats),
                   "output_quantized": sum(c["output_quantized"] for c in concats),
                   "one_scale": sum(c["scales"] == 1 for c in concats),
                   "max_scales": max((c["scales"] for c in concats), default=0)},
        "pool": {op: {"count": len(nodes), "input_quantized": sum(dq(n.input[0]) is not None for n in nodes),
                      "output_quantized": sum(bool(output_q(n.output[0])) for n in nodes)}
                 for op, nodes in sorted(pools.items())},
        "classifier": {"op": head.op_type if head is not None else None, "int8": head_int8},
        "weights": dict(Counter(weight_storage(n.input[1]) for n in layers)),
        "bytes": path.stat().st_size,
    }


# --- accuracy ---------------------------------------------------------------------------------------------------

def run_onnx(path: Path, x: np.ndarray, optimized: bool) -> np.ndarray:
    """Logits of `path` on `x` with the CPU provider; `optimized`: ORT's default graph optimizations (what
    `cnnx check` runs), else none at all (Q/DQ computed as the ONNX spec defines them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)])


def accuracy(path: Path, x: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict:
    from cnnx import parity

    result: dict = {}
    for optimized in (True, False):
        out = run_onnx(path, x, optimized)
        metrics = parity.compare(reference, out)
        if labels is not None:
            metrics["accuracy"] = float(np.mean(out.argmax(1) == labels))
        result["ort_default" if optimized else "ort_no_optimization"] = metrics
        if not optimized:  # per held-out input, for the verdict's paired bootstrap (headline: optimizations off)
            result["noise_per_input"] = energy_per_input(out.astype(np.float64) - reference)
    return result


def energy_per_input(logits: np.ndarray) -> list[float]:
    return (logits.astype(np.float64) ** 2).reshape(len(logits), -1).sum(axis=1).tolist()


def sqnr_difference_ci(signal: list[float], noise_a: list[float], noise_b: list[float]) -> tuple[float, float]:
    """95 % interval of SQNR(a) - SQNR(b) in dB, by a paired bootstrap over the held-out inputs (both quantizers
    judged on the same resampled inputs): how much of a difference the held-out set can tell apart."""
    s, a, b = np.array(signal), np.array(noise_a), np.array(noise_b)
    picks = np.random.default_rng(0).integers(0, len(s), size=(BOOTSTRAP, len(s)))
    diffs = 10 * np.log10(b[picks].sum(1) / a[picks].sum(1))  # the signal cancels out of the difference
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def zoo_held_out(spec, work: Path) -> tuple[np.ndarray, dict]:
    """The held-out photos (see the module doc) as preprocessed tensors, VIEWS views each."""
    import skimage.data
    from PIL import Image

    from cnnx.data import load_image, preprocess, sample_split
    from cnnx.export.calibration import augment, augmentations

    folder = work / "held-out-photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in SKIMAGE_HELD_OUT:
        target = folder / f"{name}.png"
        if not target.is_file():
            pixels = getattr(skimage.data, name)()
            Image.fromarray(pixels[0] if isinstance(pixels, tuple) else pixels).save(target)
    calibration_photos, held_samples = sample_split()
    photos = held_samples + sorted(folder.glob("*.png"))
    assert not {p.stem for p in photos} & {p.stem for p in calibration_photos}, "a calibration photo is held out"
    images = [load_image(p) for p in photos]
    x = np.stack([preprocess(augment(img, *view), spec.preprocess) for img in images
                  for view in augmentations()[:VIEWS]])
    return x, {"photos": [p.name for p in photos], "views": VIEWS, "inputs": len(x)}


# --- the cnnx side and the run ------------------------------------------------------------------------------------

def export_cnnx(model: str, work: Path) -> dict:
    """cnnx's fp32 and int8 (tensorrt form) artifacts, the calibration tensors it used, and the held-out set."""
    from cnnx.export.calibration import DEFAULT_CALIB_SIZE, load_calibration
    from cnnx.export.pipeline import ExportOptions, export_model
    from cnnx.models.registry import get_spec

    out = work / model / "cnnx"
    if model == DIGITS:
        from docs_blocks import trained_network_module  # scripts/ is on sys.path when a script runs

        tn = trained_network_module()
        folder = work / model / "digits"
        folder.mkdir(parents=True, exist_ok=True)
        saved = folder / "resnet18-digits.pth"  # train once; later runs load the checkpoint the first one saved
        digits = tn.make_trained_digits(folder, weights=saved if saved.is_file() else None)
        options = ExportOptions("resnet18", precisions=("fp32", "int8"), out_dir=out, weights=digits.weights,
                                labels=digits.labels_file, input_size=tn.SIZE, resize=tn.SIZE,
                                calib_data=digits.calibration, calib_size=DIGITS_CALIB_SIZE, images=digits.calibration,
                                int8_target="tensorrt", target="onnx")
        spec = get_spec("resnet18").at_input_size(tn.SIZE, tn.SIZE)
        images, labels = tn.load_digits()
        _, held = tn.split(labels)
        x, y = tn.to_tensor(images[held]).numpy(), labels[held]
        held_info = {"digits": len(held), "source": "tests/trained_network.py's held-out split (never trained on)",
                     "eager_fp32_top1": digits.held_out_top1}
    else:
        options = ExportOptions(model, precisions=("fp32", "int8"), out_dir=out, calib_data="samples",
                                calib_size=DEFAULT_CALIB_SIZE, int8_target="tensorrt", target="onnx")
        spec = get_spec(model)
        x, y = None, None
    results = {r.manifest.precision: r for r in export_model(options)}
    # cnnx's other calibration methods: mse (clipping), and auto (minmax or mse, the better on its probe)
    [mse] = export_model(replace(options, precisions=("int8",), out_dir=work / model / "cnnx-mse",
                                 calib_method="mse"))
    [auto] = export_model(replace(options, precisions=("int8",), out_dir=work / model / "cnnx-auto",
                                  calib_method="auto"))
    calib = load_calibration(options.calib_data, spec, options.calib_size, seed=options.seed)
    recorded = results["int8"].manifest.precision_details["calibration"]
    if calib.sha256 != recorded["sha256"]:
        raise SystemExit(f"{model}: the calibration tensors differ from the ones cnnx used ({calib.sha256} vs "
                         f"{recorded['sha256']})")
    if x is None:
        x, held_info = zoo_held_out(spec, work)
    return {"fp32": results["fp32"].path, "int8": results["int8"].path, "int8_mse": mse.path, "int8_auto": auto.path,
            "auto_choice": auto.manifest.precision_details["calibration"]["auto"], "calib": calib, "x": x, "labels": y,
            "held_out": held_info, "calibration": {k: recorded[k] for k in ("source", "count", "method", "sha256")},
            "cnnx_check": results["int8"].manifest.precision_details["accuracy"]}


def compare_model(model: str, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    print(f"{model}: exporting with cnnx", flush=True)
    made = export_cnnx(model, args.work)
    modelopt = run_modelopt(args.modelopt_python, made["fp32"], made["calib"].tensors, made["calib"].sha256,
                            args.work / model / "modelopt", args.settings)
    print(f"{model}: measuring", flush=True)
    reference = run_onnx(made["fp32"], made["x"], optimized=True)
    fp32 = {"bytes": made["fp32"].stat().st_size, "signal_per_input": energy_per_input(reference)}
    if made["labels"] is not None:
        fp32["accuracy"] = float(np.mean(reference.argmax(1) == made["labels"]))
    def row(path: Path, **facts) -> dict:
        return {"path": str(path), **facts, "placement": placement(path),
                **accuracy(path, made["x"], reference, made["labels"])}

    rows = {"cnnx": row(made["int8"]), "cnnx calib mse": row(made["int8_mse"]),
            "cnnx calib auto": row(made["int8_auto"], choice=made["auto_choice"])}
    for name, run in modelopt.items():
        rows[f"modelopt {name}"] = row(run["path"], seconds=run["seconds"], versions=run["versions"])
    return {"model": model, "calibration": made["calibration"], "held_out": made["held_out"], "fp32": fp32,
            "cnnx_manifest_check": made["cnnx_check"], "quantizers": rows,
            "seconds": round(time.perf_counter() - start, 1)}


# --- report -------------------------------------------------------------------------------------------------------

def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def tables(results: list[dict]) -> str:
    # The headline numbers run the graphs as written (ORT's optimizations off): ORT's default CPU optimizations
    # rewrite Q/DQ graphs into its own int8 kernels, and one of them (WeightBiasQuantization, which quantizes a
    # Conv's float bias to int32 at input scale x weight scale) wrecks ModelOpt's fp16 graphs of the digits network.
    acc = ["| model | quantizer | SQNR dB | SQNR dB, ORT default optimizations (as `cnnx check`) | top-1 agreement "
           "| top-1 accuracy (retained) |", "|---|---|---:|---:|---:|---:|"]
    place = ["| model | quantizer | Conv inputs Q'd | residual Add: both / one / no input Q'd "
             "| Add inputs from: Q'd; float | Concat: Q'd inputs, Q'd outputs, one scale | pooling: Q'd in / out "
             "| classifier | Q / DQ nodes (weight DQ) | weights stored | size MB (fp32) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdict = ["| model | cnnx's best | SQNR dB | ModelOpt's best | SQNR dB | cnnx - ModelOpt dB (95 % interval) "
               "| top-1 retained: cnnx, ModelOpt | cnnx calib auto kept |", "|---|---|---:|---|---:|---:|---|---|"]
    for r in results:
        best = {tool: best_of(r, tool) for tool in ("cnnx", "modelopt")}
        verdict.append(verdict_row(r, best))
        if "accuracy" in r["fp32"]:
            acc.append(f"| {r['model']} | fp32 ONNX (reference) | - | - | - | {r['fp32']['accuracy']:.4f} |")
        for name, q in r["quantizers"].items():
            m, optimized, p = q["ort_no_optimization"], q["ort_default"], q["placement"]
            label = display(name) + (" (best)" if name in best.values() else "")
            if "choice" in q:  # cnnx's auto calibration: which method the probe kept
                label += f": {q['choice']['chosen']}"
            top1 = (f"{m['accuracy']:.4f} ({m['accuracy'] / r['fp32']['accuracy']:.4f})" if "accuracy" in m else "-")
            acc.append(f"| {r['model']} | {label} | {m['sqnr_db']:.2f} | {optimized['sqnr_db']:.2f} | {m['top1']:.3f} "
                       f"| {top1} |")
            a, c, conv = p["add"], p["concat"], p["conv"]
            adds = f"{a['both_inputs_quantized']} / {a['one_input_quantized']} / {a['no_input_quantized']}" \
                if a["count"] else "-"
            origins = "; ".join(", ".join(f"{k} {v}" for k, v in sorted(a[f"{kind}_inputs_from"].items())) or "-"
                                for kind in ("quantized", "float"))
            concat = (f"{c['quantized_inputs']}/{c['inputs']}, {c['output_quantized']}/{c['count']}, "
                      f"{c['one_scale']}/{c['count']}") if c["count"] else "-"
            pools = "; ".join(f"{op} {v['input_quantized']} / {v['output_quantized']} of {v['count']}"
                              for op, v in p["pool"].items()) or "-"
            head = f"{p['classifier']['op']} {'int8' if p['classifier']['int8'] else 'float'}"
            weights = ", ".join(f"{k}: {v}" for k, v in sorted(p["weights"].items()))
            place.append(f"| {r['model']} | {label} | {conv['input_quantized']}/{conv['count']} | {adds} | {origins} | "
                         f"{concat} | {pools} | {head} | {p['quantize_nodes']} / {p['dequantize_nodes']} "
                         f"({p['weight_dequantize_nodes']}) | {weights} | {_mb(p['bytes'])} "
                         f"({_mb(r['fp32']['bytes'])}) |")
    return ("**Best setting against best setting** (each tool's best SQNR on the held-out inputs, ORT's graph "
            "optimizations off)\n\n" + "\n".join(verdict) + "\n\n"
            "**Accuracy** against the fp32 ONNX model on held-out inputs (ORT's graph optimizations off unless "
            "said)\n\n" + "\n".join(acc) + "\n\n**Placement**\n\n" + "\n".join(place))


def display(quantizer: str) -> str:
    return "cnnx minmax (default)" if quantizer == "cnnx" else quantizer.replace("modelopt ", "ModelOpt ")


def best_of(result: dict, tool: str) -> str:
    """The name of `tool`'s quantizer row ("cnnx..." or "modelopt ...") with the best held-out SQNR."""
    rows = result["quantizers"]
    return max((k for k in rows if k.startswith(tool)), key=lambda k: rows[k]["ort_no_optimization"]["sqnr_db"])


def verdict_row(result: dict, best: dict) -> str:
    rows = result["quantizers"]
    sqnr = {tool: rows[name]["ort_no_optimization"]["sqnr_db"] for tool, name in best.items()}
    fp32_top1 = result["fp32"].get("accuracy")
    retained = ", ".join(f"{rows[name]['ort_no_optimization']['accuracy'] / fp32_top1:.4f}" for name in best.values()) \
        if fp32_top1 else "-"
    names = {tool: display(name) for tool, name in best.items()}
    interval = ""
    if "signal_per_input" in result["fp32"]:
        low, high = sqnr_difference_ci(result["fp32"]["signal_per_input"],
                                       *(rows[best[tool]]["noise_per_input"] for tool in ("cnnx", "modelopt")))
        interval = f" ({low:+.2f} to {high:+.2f})"
    return (f"| {result['model']} | {names['cnnx']} | {sqnr['cnnx']:.2f} | {names['modelopt']} | "
            f"{sqnr['modelopt']:.2f} | {sqnr['cnnx'] - sqnr['modelopt']:+.2f}{interval} | {retained} | "
            f"{rows['cnnx calib auto']['choice']['chosen']} |")


def versions(results: list[dict]) -> dict:
    from importlib import metadata

    import cnnx
    from cnnx.export import int8
    from cnnx.export.reuse import code_digest

    modelopt = next((q["versions"] for r in results for q in r["quantizers"].values() if "versions" in q), {})
    return {"main venv": {p: metadata.version(p) for p in ("onnxruntime", "onnx", "torch")},
            "modelopt venv": modelopt, "cnnx": str(Path(cnnx.__file__).parent), "cnnx code digest": code_digest(),
            "cnnx int8.py sha256": sha256_file(Path(int8.__file__))}


MARKER = "INT8-VS-MODELOPT"


def write_markdown(path: Path, results: list[dict], info: dict, stamp: str) -> None:
    """The generated block (machine, versions, tables) of the docs page: only the block is replaced when the page
    already has one, so the hand-written reading around it stays; else a page with just the block is written."""
    block = "\n".join([
        stamp, "", "Versions: " + "; ".join(f"{venv}: " + ", ".join(f"{k} {v}" for k, v in found.items())
                                             for venv, found in info.items() if isinstance(found, dict)) + ".",
        f"cnnx: code digest {info['cnnx code digest'][:12]}, export/int8.py sha256 "
        f"{info['cnnx int8.py sha256'][:12]}.", "",
        tables(results)])
    begin, end = f"<!-- {MARKER}:BEGIN -->", f"<!-- {MARKER}:END -->"
    text = path.read_text() if path.is_file() else ""
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + block + "\n" + text[text.index(end):]
    else:
        text = "\n".join(["# cnnx int8 (TensorRT Q/DQ form) against NVIDIA ModelOpt", "",
                          "Generated by `scripts/int8_vs_modelopt.py` (see its docstring for the method).", "",
                          begin, block, end, ""])
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--work", type=Path, default=ROOT / "export" / "int8-vs-modelopt",
                        help="exports and ModelOpt outputs, kept for reruns (default: export/int8-vs-modelopt)")
    parser.add_argument("--json", type=Path, default=None, help="results file (default: WORK/results.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the docs page here")
    parser.add_argument("--modelopt-python", default=os.environ.get(
        "CNNX_MODELOPT_PYTHON", str(ROOT / ".venv-modelopt" / "bin" / "python")))
    parser.add_argument("--modelopt-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--calib", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, default=None,
                        help="measure nothing: print (and with --markdown write) the tables of a results file")
    args = parser.parse_args()
    if args.modelopt_worker:
        return modelopt_worker(args)
    if args.render:
        run = json.loads(args.render.read_text())
    else:
        run = measure(args)
    print(run["machine"])
    print(tables(run["results"]))
    if args.markdown:
        write_markdown(args.markdown, run["results"], run["versions"], run["machine"])
        print(f"wrote {args.markdown}")


def measure(args: argparse.Namespace) -> dict:
    if not Path(args.modelopt_python).is_file():
        raise SystemExit(f"no ModelOpt venv at {args.modelopt_python}: python3 -m venv .venv-modelopt && "
                         ".venv-modelopt/bin/pip install --no-deps -r scripts/modelopt-requirements.txt")
    from docs_blocks import stamp  # scripts/ is on sys.path when a script runs

    args.work = args.work.resolve()
    results = []
    for model in args.models:
        results.append(compare_model(model, args))
        print(f"{model}: {results[-1]['seconds']:.0f} s", flush=True)
    run = {"machine": stamp(), "versions": versions(results), "results": results}
    json_path = args.json or args.work / "results.json"
    json_path.write_text(json.dumps(run, indent=1, default=str))
    print(f"wrote {json_path}")
    return run


if __name__ == "__main__":
    main()
