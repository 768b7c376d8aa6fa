"""Everything cnnx can only verify on an NVIDIA GPU, in one command and one report.

    PYTHONPATH=src python scripts/gpu_check.py --out gpu-report

Run it from a plain checkout (no install needed) on a machine with an NVIDIA GPU and a CUDA build of PyTorch.
It installs nothing and reaches no network. Steps, each in its own process with a time limit; a step whose
packages or hardware are missing is skipped, and the report says why:

  environment  Python, torch and CUDA, the GPUs and driver, and which of cnnx's packages are installed
  gpu-tests    the tests marked `gpu` / `tensorrt` (pytest; JUnit XML kept)
  torch-bench  resnet50 on eager PyTorch and CUDA graphs (fp32, fp16) and torch.compile (fp32), batch 1/8/32
  tensorrt     resnet50 fp32/fp16/int8: export, build the engines, parity against eager PyTorch, benchmark
               (TensorRT, plus ONNX Runtime's CUDA/TensorRT providers where onnxruntime-gpu is installed)

Writes OUT/report.json (every number), OUT/summary.md (readable), and each step's log. The whole run stays
within --budget seconds (default 570, sized for 10 minutes on one H100). Timings use cnnx bench's statistics
(trtexec's rules: CUDA-event compute time on GPU, plus end-to-end with the copies).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "resnet50"
BATCHES = (1, 8, 32)
# (step, seconds it may take at most, packages it needs (import names))
STEPS = (
    ("environment", 60, ()),
    ("gpu-tests", 150, ("torch", "numpy", "PIL", "pytest", "click", "rich", "onnx", "onnxruntime")),
    ("torch-bench", 180, ("torch", "numpy", "PIL")),
    ("tensorrt", 330, ("torch", "numpy", "PIL", "tensorrt", "onnx", "onnxscript", "onnxsim", "onnxruntime")),
)
# import name -> distribution name, for the environment report
PACKAGES = {"torch": "torch", "numpy": "numpy", "PIL": "pillow", "onnx": "onnx", "onnxscript": "onnxscript",
            "onnxsim": "onnxsim", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "pytest": "pytest",
            "click": "click", "rich": "rich", "safetensors": "safetensors", "openvino": "openvino"}


def missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def cuda_problem() -> str | None:
    import torch

    if torch.version.cuda is None:
        return f"PyTorch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
    return None


class Recorder:
    """The step's JSON result, rewritten on every update so that a step stopped by its time limit still
    leaves what it had measured."""

    def __init__(self, path: Path):
        self.path, self.data = path, {"status": "running"}

    def update(self, **fields) -> None:
        self.data.update(fields)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        tmp.replace(self.path)


# ---------------------------------------------------------------------------------------------------------------
# steps (each runs in a child process: `gpu_check.py --step NAME`)
# ---------------------------------------------------------------------------------------------------------------

def step_environment(rec: Recorder, args) -> None:
    from importlib import metadata

    versions = {}
    for module, dist in PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            versions[module] = None
            continue
        try:
            versions[module] = metadata.version(dist)
        except metadata.PackageNotFoundError:  # e.g. onnxruntime-gpu, tensorrt-cu12: another distribution name
            versions[module] = "installed"
    if versions["tensorrt"]:  # installed is not usable: its libraries (libnvinfer) must load too
        try:
            import tensorrt

            versions["tensorrt"] = tensorrt.__version__
        except Exception as exc:
            versions["tensorrt"] = f"import fails: {exc.__class__.__name__}: {str(exc)[:200]}"
    info = {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "missing": [n for n, v in versions.items() if v is None]}
    if versions["torch"]:
        import torch

        info["torch_cuda"] = torch.version.cuda
        info["gpus"] = [{"index": i, "name": torch.cuda.get_device_name(i),
                         "compute_capability": "%d.%d" % torch.cuda.get_device_capability(i),
                         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                        for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
        info["cuda_problem"] = cuda_problem()
    if versions["onnxruntime"]:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip().splitlines() if smi.returncode == 0 else smi.stderr.strip()[:300]
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["nvidia_smi"] = f"not available ({exc.__class__.__name__})"
    rec.update(status="ok", **info)


def step_gpu_tests(rec: Recorder, args) -> None:
    import xml.etree.ElementTree as ET

    import pytest

    files = [str(p) for p in sorted((ROOT / "tests").glob("test_*.py"))
             if "mark.gpu" in p.read_text() or "mark.tensorrt" in p.read_text()]
    junit = args.out / "gpu-tests.xml"
    code = pytest.main(["-q", "-rs", "-p", "no:cacheprovider", "-m", "gpu or tensorrt", "--junitxml", str(junit),
                        "--rootdir", str(ROOT), *files])
    counts, failures, skips = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}, [], []
    if junit.is_file():
        for suite in ET.parse(junit).getroot().iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            for tag in ("failure", "error"):
                for item in case.iter(tag):
                    failures.append({"test": name, "message": (item.get("message") or "")[:500]})
            for item in case.iter("skipped"):
                skips.append({"test": name, "reason": (item.get("message") or "")[:300]})
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    rec.update(status="ok" if int(code) == 0 else "failed", exit_code=int(code), files=files, passed=passed,
               **counts, failed_tests=failures, skipped_tests=skips, junit=str(junit))


def _bench(target, backends, precisions, device, duration, out_dir, batches=BATCHES):
    from cnnx.bench.suite import run_bench

    report = run_bench(target, backends=backends, precisions=precisions, batches=batches, device=device,
                       warmup_ms=200, duration_s=duration, min_iters=10, out_dir=out_dir,
                       export_kwargs={"calib_data": "samples", "calib_size": 16})
    return report.to_dict()


def step_torch_bench(rec: Recorder, args) -> None:
    device, batches = args.device, BATCHES
    work = args.out / "work"
    cases, machine = [], None
    plans = ((("torch", "torch-cudagraph"), ("fp32", "fp16")), (("torch-compile",), ("fp32",)))
    if device == "cpu":  # checking the script itself on a machine without a GPU: the eager part, briefly
        plans, batches = ((("torch",), ("fp32",)),), (1,)
    for backends, precisions in plans:
        report = _bench(MODEL, backends, precisions, device, args.duration, work / "export", batches)
        machine = report["machine"]
        cases += report["cases"]
        rec.update(status="running", model=MODEL, device=device, machine=machine, cases=cases)
    rec.update(status="ok" if all(c["status"] == "ok" for c in cases) else "failed", cases=cases)


def step_tensorrt(rec: Recorder, args) -> None:
    from cnnx.backends import BACKENDS
    from cnnx.backends.tensorrt import unavailable_reason
    from cnnx.backends.tensorrt.build import build_engine
    from cnnx.backends.tensorrt.runner import TensorRTRunner
    from cnnx.export.pipeline import ExportOptions, export_model
    from cnnx.models.registry import get_spec
    from cnnx.reference import check_runner, eager_model, reference_data

    reason = unavailable_reason()
    if reason:
        rec.update(status="skipped", reason=f"TensorRT is unusable here: {reason}")
        return
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # bench builds (and reuses) plans under ./engines
    start = time.perf_counter()
    exports = export_model(ExportOptions(MODEL, precisions=("fp32", "fp16", "int8"), out_dir="export",
                                         calib_data="samples", calib_size=16, target="onnx",
                                         int8_target="tensorrt"))
    artifacts = {r.manifest.precision: r.path for r in exports}
    rec.update(export={"seconds": round(time.perf_counter() - start, 1),
                       "onnx_parity_cpu": {r.manifest.precision: r.passed for r in exports}})
    builds, parity = {}, {}
    spec = get_spec(MODEL)
    eager = eager_model(MODEL, exports[0].manifest.weights)
    for precision, path in artifacts.items():
        plan, manifest = build_engine(path, max_batch=max(BATCHES), reuse=True)
        builds[precision] = {"plan": str(plan), "build_seconds": manifest.build_seconds,
                             "tensorrt": manifest.tensorrt["version"], "gpu": manifest.gpu,
                             "timing_cache": manifest.timing_cache}
        rec.update(builds=builds)
        data = reference_data(eager, spec, precision, None)
        result = check_runner(TensorRTRunner(plan), data, artifact=str(plan), model=MODEL, precision=precision)
        parity[precision] = {"passed": result.passed, "failures": result.failures, "metrics": result.metrics}
        rec.update(parity=parity)
    gpu_artifact_backends = [name for name, b in BACKENDS.items() if b.device == "cuda" and b.runs_artifacts]
    not_run = {name: BACKENDS[name].unavailable_reason() for name in gpu_artifact_backends}
    backends = tuple(name for name, reason in not_run.items() if not reason)
    not_run = {name: reason for name, reason in not_run.items() if reason}
    rec.update(bench_not_run=not_run)
    report = _bench(MODEL, backends, ("fp32", "fp16", "int8"), "cuda", args.duration, "export")
    ok = all(p["passed"] for p in parity.values()) and all(c["status"] == "ok" for c in report["cases"])
    rec.update(status="ok" if ok else "failed", cases=report["cases"], machine=report["machine"])


STEP_FUNCTIONS = {"environment": step_environment, "gpu-tests": step_gpu_tests, "torch-bench": step_torch_bench,
                  "tensorrt": step_tensorrt}


def run_step(name: str, args) -> None:
    rec = Recorder(args.out / f"{name}.json")
    needs = dict((s, n) for s, _, n in STEPS)[name]
    absent = missing(needs)
    if absent:
        rec.update(status="skipped", reason=f"not installed: {', '.join(absent)} (this script installs nothing)")
        return
    if name != "environment" and not (name == "torch-bench" and args.device == "cpu"):
        problem = cuda_problem()
        if problem:
            rec.update(status="skipped", reason=problem)
            return
    try:
        STEP_FUNCTIONS[name](rec, args)
    except Exception as exc:
        rec.update(status="failed", reason=f"{exc.__class__.__name__}: {str(exc)[:1000]}",
                   traceback=traceback.format_exc()[-4000:])


# ---------------------------------------------------------------------------------------------------------------
# the driver: one child process per step, then the report
# ---------------------------------------------------------------------------------------------------------------

def drive(args) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    deadline = time.monotonic() + args.budget
    steps = {}
    for name, limit, _ in STEPS:
        if args.steps and name not in args.steps:
            continue
        left = deadline - time.monotonic()
        result_file = args.out / f"{name}.json"
        result_file.unlink(missing_ok=True)
        if left < 20:
            steps[name] = {"status": "skipped", "reason": f"out of the {args.budget:.0f} s budget"}
            continue
        timeout = min(limit, left)
        print(f"[gpu_check] {name} (at most {timeout:.0f} s)", flush=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--out", str(args.out),
                   "--device", args.device, "--duration", str(args.duration)]
        start = time.monotonic()
        with open(args.out / f"{name}.log", "w") as log:
            try:
                code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                      timeout=timeout).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        if code == "timeout":
            result.update(status="failed", reason=f"stopped after its time limit of {timeout:.0f} s "
                                                  "(what it had measured is kept)")
        elif code != 0 and result.get("status") in (None, "running"):
            result.update(status="failed", reason=f"the step's process exited with {code} (see {name}.log)")
        result["seconds"] = round(time.monotonic() - start, 1)
        result["log"] = f"{name}.log"
        steps[name] = result
        print(f"[gpu_check] {name}: {result['status']}" + (f" ({result['reason']})" if result.get("reason") else ""),
              flush=True)
    report = {"format": "cnnx-gpu-check/1", "model": MODEL, "batches": list(BATCHES), "budget_s": args.budget,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": steps}
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (args.out / "summary.md").write_text(summary(report))
    return report


def _bench_rows(cases: list[dict], baseline: dict[int, float]) -> list[str]:
    """Markdown rows; speedup against eager PyTorch fp32 at the same batch (from the torch-bench step)."""
    rows = []
    for c in cases:
        head = f"| {c['backend']} | {c['precision']} | {c['batch']} |"
        if c["status"] != "ok":
            rows.append(f"{head} {c['status']}: {(c.get('reason') or '').replace('|', '/')} | | | | |")
            continue
        lat, e2e = c["latency"], c.get("end_to_end") or {}
        speedup = f"{baseline[c['batch']] / lat['median_ms']:.2f}x" if c["batch"] in baseline else "-"
        e2e_ms = f"{e2e['median_ms']:.3f}" if e2e else "-"
        rows.append(f"{head} {lat['median_ms']:.3f} | {lat['p99_ms']:.3f} | {e2e_ms} | {lat['images_per_s']:.0f} | "
                    f"{speedup} |")
    return rows


def summary(report: dict) -> str:
    steps = report["steps"]
    lines = [f"# cnnx GPU check ({report['created']})", "", "| step | status | seconds | why |", "|---|---|---:|---|"]
    for name, s in steps.items():
        why = (s.get("reason") or "").replace("|", "/")
        lines.append(f"| {name} | {s['status']} | {s.get('seconds', '')} | {why} |")
    env = steps.get("environment", {})
    if env.get("status") == "ok":
        lines += ["", "## Environment", "", f"- Python {env['python']} on {env['platform']}",
                  f"- torch {env['packages'].get('torch')} (CUDA {env.get('torch_cuda')}); GPUs: "
                  + (", ".join(f"{g['index']}: {g['name']} (sm {g['compute_capability']}, {g['memory_gib']} GiB)"
                               for g in env.get("gpus", [])) or f"none ({env.get('cuda_problem')})"),
                  f"- nvidia-smi: {env.get('nvidia_smi')}",
                  "- packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v),
                  "- not installed: " + (", ".join(env["missing"]) or "none")]
        if env.get("onnxruntime_providers"):
            lines.append(f"- onnxruntime providers: {', '.join(env['onnxruntime_providers'])}")
    tests = steps.get("gpu-tests", {})
    if "tests" in tests:
        lines += ["", "## GPU tests", "", f"{tests['passed']} passed, {tests['failures']} failed, {tests['errors']} "
                  f"errors, {tests['skipped']} skipped ({', '.join(Path(f).name for f in tests['files'])})"]
        lines += [f"- FAILED {f['test']}: {f['message']}" for f in tests["failed_tests"]]
        lines += [f"- skipped {s['test']}: {s['reason']}" for s in tests["skipped_tests"]]
    torch_cases = steps.get("torch-bench", {}).get("cases", [])
    baseline = {c["batch"]: c["latency"]["median_ms"] for c in torch_cases
                if (c["backend"], c["precision"], c["status"]) == ("torch", "fp32", "ok")}
    header = ["| backend | precision | batch | median ms | p99 ms | end-to-end median ms | images/s | "
              "speedup vs eager fp32 |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    if torch_cases:
        device = steps["torch-bench"].get("device", "cuda")
        lines += ["", f"## PyTorch on {device} ({report['model']})", "", *header, *_bench_rows(torch_cases, baseline)]
    trt = steps.get("tensorrt", {})
    if trt.get("builds") or trt.get("parity"):
        lines += ["", f"## TensorRT ({report['model']})", "",
                  "| precision | build s | parity | cosine | SQNR dB | top-1 | top-5 |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for precision, build in trt.get("builds", {}).items():
            p = trt.get("parity", {}).get(precision)
            m = p["metrics"] if p else {}
            verdict = ("PASS" if p["passed"] else "FAIL: " + "; ".join(p["failures"])) if p else "-"
            nan = float("nan")
            lines.append(f"| {precision} | {build['build_seconds']} | {verdict} | {m.get('cosine', nan):.6f} | "
                         f"{m.get('sqnr_db', nan):.1f} | {m.get('top1', nan):.2f} | {m.get('top5', nan):.2f} |")
        if trt.get("cases"):
            lines += ["", *header, *_bench_rows(trt["cases"], baseline)]
        lines += [f"- {b} not run: {why}" for b, why in trt.get("bench_not_run", {}).items()]
    for name, s in steps.items():
        if s.get("traceback"):
            lines += ["", f"## {name} traceback", "", "```", s["traceback"], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="report folder (default ./gpu-check)")
    parser.add_argument("--budget", type=float, default=570, help="seconds for the whole run (default 570)")
    parser.add_argument("--duration", type=float, default=0.5, help="timed seconds per benchmark case")
    parser.add_argument("--steps", nargs="*", help=f"only these steps ({', '.join(s for s, _, _ in STEPS)})")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: run torch-bench's eager part on the CPU, to check this script without a GPU")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args()
    args.out = args.out.resolve()
    if args.step:
        run_step(args.step, args)
        return 0
    report = drive(args)
    print(f"[gpu_check] wrote {args.out / 'report.json'} and {args.out / 'summary.md'}")
    return 1 if any(s["status"] == "failed" for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
