"""TensorRT backend: API surface (10.x and 11.x), the CPU-testable logic, and GPU tests that skip with the reason."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from cnnx.artifacts import sha256_file
from cnnx.backends import tensorrt as trt_backend
from cnnx.backends.onnxruntime_gpu import (OnnxRuntimeCudaRunner, ort_profile_options,
                                           provider_unavailable_reason)
from cnnx.backends.tensorrt import unavailable_reason
from cnnx.backends.tensorrt.build import build_command, describe_onnx, format_parser_errors
from cnnx.backends.tensorrt.plan import (BatchProfile, EngineIncompatible, batch_problem, check_plan,
                                         compatibility_problem, make_profile, plan_filename, read_timing_cache,
                                         timing_cache_path, write_timing_cache)
from cnnx.errors import BackendUnavailable, UsageError
from cnnx.export import engines
from cnnx.export.engines import engine_for_artifact
from cnnx.manifest import manifest_path, read_manifest
from plans import plan_manifest, write_fake_plan

API_DIR = Path(__file__).parent / "data" / "tensorrt_api"
SOURCES = sorted(Path(trt_backend.__file__).parent.glob("*.py"))

# ---------------------------------------------------------------------------------------------------------------
# API surface: every tensorrt name the backend touches exists in 10.x and 11.x; nothing removed in 11 is used.
# ---------------------------------------------------------------------------------------------------------------

# Variables (and self._attributes) that hold TensorRT objects in backends/tensorrt.py, by binding class.
OBJECT_CLASSES = {"builder": "Builder", "config": "IBuilderConfig", "parser": "OnnxParser",
                  "parser_error": "ParserError", "profile": "IOptimizationProfile", "cache": "ITimingCache",
                  "runtime": "Runtime", "engine": "ICudaEngine", "context": "IExecutionContext",
                  "_runtime": "Runtime", "_engine": "ICudaEngine", "_context": "IExecutionContext"}
# Legacy names cnnx must never call, whatever object they are on (binding-index API, pre-v3 execution).
LEGACY = {"execute_v2", "execute_async_v2", "execute_async", "execute", "get_binding_shape", "get_binding_dtype",
          "get_binding_index", "get_binding_name", "binding_is_input", "num_bindings", "set_binding_shape",
          "get_binding_vectorized_dim", "max_batch_size", "build_engine", "max_workspace_size"}


def load_names(name: str) -> set[str]:
    names = set()
    for line in (API_DIR / name).read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            names.add(entry)
    return names


def trt_chain(node: ast.AST) -> str | None:
    """'A.B' for an expression trt.A.B, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt" and parts:
        return ".".join(reversed(parts))
    return None


def used_api(source: str) -> tuple[set[str], set[str]]:
    """(tensorrt names used, as 'Name' / 'Enum.VALUE' / 'Class.member'; every attribute name used on a
    TensorRT object, for the legacy check)."""
    used, members = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            chain = trt_chain(node)
            if chain is not None:
                used.add(chain)
                continue
            base = node.value
            owner = base.id if isinstance(base, ast.Name) else (
                base.attr if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name)
                and base.value.id == "self" else None)
            if owner in OBJECT_CLASSES:
                used.add(f"{OBJECT_CLASSES[owner]}.{node.attr}")
                members.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                                                                                                   "hasattr"):
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value,
                                                                                              str):
                target = node.args[0]
                prefix = "" if isinstance(target, ast.Name) and target.id == "trt" else trt_chain(target)
                if prefix is not None:
                    used.add(f"{prefix}.{node.args[1].value}".lstrip("."))
    # inner chains (trt.A inside trt.A.B) are recorded too, which is right: both must exist. Dunder calls on
    # binding classes (trt.ILogger.__init__) are pybind11/Python, not binding names.
    return {u for u in used if not u.split(".")[-1].startswith("__") or u == "__version__"}, members


@pytest.fixture(scope="module")
def api_used() -> tuple[set[str], set[str]]:
    used, members = set(), set()
    for source in SOURCES:
        names, attrs = used_api(source.read_text())
        used |= names
        members |= attrs
    return used, members


def test_api_scan_sees_the_calls_that_matter(api_used):
    used, _ = api_used
    for expected in ("Builder", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "OnnxParser",
                     "OnnxParser.parse_from_file", "MemoryPoolType.WORKSPACE", "BuilderFlag.TF32",
                     "IBuilderConfig.set_timing_cache", "Runtime.deserialize_cuda_engine", "TensorIOMode.INPUT",
                     "IExecutionContext.execute_async_v3", "IExecutionContext.set_tensor_address",
                     "ICudaEngine.get_tensor_profile_shape", "IProgressMonitor"):
        assert expected in used, f"the AST scan no longer sees {expected}: fix the scan or the naming"


@pytest.mark.parametrize("version_file", ["tensorrt-10.x.txt", "tensorrt-11.x.txt"])
def test_every_tensorrt_name_used_exists(api_used, version_file):
    used, _ = api_used
    known = load_names(version_file)
    missing = sorted(used - known)
    assert not missing, f"names not in the {version_file} bindings: {missing}"


def test_no_name_removed_in_tensorrt_11_is_used(api_used):
    used, members = api_used
    removed = load_names("removed-in-11.txt")
    assert not used & removed, f"uses names removed in TensorRT 11: {sorted(used & removed)}"
    # belt and braces, independent of the variable-name tracking: no attribute of anything, and no string
    # constant (getattr targets), carries a removed name; docstrings and comments may mention them
    nodes = [n for source in SOURCES for n in ast.walk(ast.parse(source.read_text()))]
    attributes = {n.attr for n in nodes if isinstance(n, ast.Attribute)}
    strings = {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for name in ("EXPLICIT_BATCH", "FP16", "INT8", "BF16", "int8_calibrator", "set_calibration_profile",
                 "platform_has_fast_fp16", "platform_has_fast_int8", "quantization_flags", "supports_model"):
        assert name not in attributes and name not in strings, name
    assert not [a for a in attributes if a.startswith("IInt8")]
    assert not members & LEGACY, f"legacy binding-index / pre-v3 API used: {sorted(members & LEGACY)}"


def test_api_lists_are_consistent():
    v10, v11, removed = load_names("tensorrt-10.x.txt"), load_names("tensorrt-11.x.txt"), load_names(
        "removed-in-11.txt")
    assert removed <= v10, f"removed names missing from the 10.x list: {sorted(removed - v10)}"
    assert not removed & v11
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in v11  # deprecated but present in 11


def test_api_scan_catches_a_removed_name():
    used, _ = used_api("import tensorrt as trt\nconfig = None\nconfig.set_flag(trt.BuilderFlag.FP16)\n"
                       "builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))\n")
    assert {"BuilderFlag.FP16", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"} <= used & load_names(
        "removed-in-11.txt")


# ---------------------------------------------------------------------------------------------------------------
# CPU: unavailability, export --target, cnnx build
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nin_onnx(tmp_path_factory) -> Path:
    from cnnx.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("export")
    return export_model(ExportOptions("nin", precisions=("fp32",), out_dir=out, check=False))[0].path


needs_no_tensorrt = pytest.mark.skipif(unavailable_reason() is None, reason="TensorRT and a GPU are usable here")


@needs_no_tensorrt
def test_engine_for_artifact_auto_reports_reason_and_command(nin_onnx):
    outcome = engine_for_artifact(nin_onnx, "auto", max_batch=16)
    assert not outcome.built and outcome.plan is None
    assert outcome.reason == unavailable_reason()
    assert outcome.command == f"cnnx build {nin_onnx} --max-batch 16"
    assert json.loads(json.dumps(outcome.to_dict()))["reason"] == outcome.reason


@needs_no_tensorrt
def test_engine_for_artifact_tensorrt_raises_exit_3_and_keeps_onnx(nin_onnx):
    before = sha256_file(nin_onnx)
    with pytest.raises(BackendUnavailable) as err:
        engine_for_artifact(nin_onnx, "tensorrt")
    assert err.value.exit_code == 3
    assert unavailable_reason() in err.value.message
    assert f"cnnx build {nin_onnx}" in err.value.hint and "kept" in err.value.hint
    assert nin_onnx.is_file() and sha256_file(nin_onnx) == before


def test_engine_for_artifact_onnx_target_does_nothing(nin_onnx, monkeypatch):
    monkeypatch.setattr(engines, "build_engine", lambda *a, **k: pytest.fail("must not build"))
    outcome = engine_for_artifact(nin_onnx, "onnx")
    assert not outcome.built and outcome.command is None
    with pytest.raises(UsageError):
        engine_for_artifact(nin_onnx, "coreml")


def test_engine_for_artifact_auto_builds_when_available(nin_onnx, monkeypatch):
    monkeypatch.setattr(engines, "unavailable_reason", lambda: None)
    monkeypatch.setattr(engines, "build_engine", lambda path, **kw: (Path("engines/x.plan"), {"kw": kw}))
    outcome = engine_for_artifact(nin_onnx, "auto", max_batch=8)
    assert outcome.built and outcome.plan == str(Path("engines/x.plan"))
    assert outcome.manifest == {"kw": {"max_batch": 8}}


@needs_no_tensorrt
def test_cli_build_without_tensorrt_exits_3_and_writes_nothing(nin_onnx, tmp_path, run_cli):
    out = tmp_path / "engines"
    result = run_cli("build", nin_onnx, "--out", out, "--max-batch", "8", "--no-tf32")
    assert result.exit_code == 3, result.output
    assert unavailable_reason().split(" (")[0] in result.stderr
    assert f"cnnx build {nin_onnx} --max-batch 8 --no-tf32 --out {out}" in " ".join(result.stderr.split())
    assert nin_onnx.is_file()
    assert not out.exists() or not any(out.iterdir())


def test_cli_build_bad_input_is_exit_2_before_availability(nin_onnx, tmp_path, run_cli):
    result = run_cli("build", nin_onnx, "--min-batch", "8", "--max-batch", "4")
    assert result.exit_code == 2 and "1 <= min <= opt <= max" in result.stderr
    assert run_cli("build", tmp_path / "missing.onnx").exit_code == 2
    assert run_cli("build", nin_onnx, "--opt-level", "9").exit_code == 2


def test_describe_onnx_with_and_without_manifest(nin_onnx, tmp_path):
    with_manifest = describe_onnx(nin_onnx)
    assert (with_manifest.model, with_manifest.precision) == ("nin", "fp32")
    assert with_manifest.input_shape[1:] == [3, 224, 224] and not isinstance(with_manifest.input_shape[0], int)
    bare = tmp_path / "my-net.onnx"
    bare.write_bytes(nin_onnx.read_bytes())
    plain = describe_onnx(bare)
    assert (plain.model, plain.precision) == ("my-net", None)
    assert plan_filename(plain.model, plain.precision, 1, 32) == "my-net-b1-32.plan"
    assert plan_filename("nin", "int8", 2, 16) == "nin-int8-b2-16.plan"


# ---------------------------------------------------------------------------------------------------------------
# CPU: pure logic (profiles, manifests, timing cache, commands, parser errors)
# ---------------------------------------------------------------------------------------------------------------


def test_make_profile_from_dynamic_input():
    p = make_profile("input", ["batch", 3, 224, 224], 1, None, 32)
    assert p.shapes() == ((1, 3, 224, 224), (32, 3, 224, 224), (32, 3, 224, 224))
    assert make_profile("input", [-1, 3, 299, 299], 2, 8, 16).to_dict()["opt"] == [8, 3, 299, 299]


@pytest.mark.parametrize("args, message", [
    ((["batch", 3, 224, 224], 4, 2, 8), "1 <= min <= opt <= max"),
    ((["batch", 3, 224, 224], 0, None, 8), "1 <= min <= opt <= max"),
    (([1, 3, 224, 224], 1, None, 32), "static batch of 1"),
    ((["batch", 3, "h", "w"], 1, None, 32), "dynamic non-batch dims"),
])
def test_make_profile_refuses_bad_ranges(args, message):
    shape, lo, opt, hi = args
    with pytest.raises(UsageError, match=message):
        make_profile("input", shape, lo, opt, hi)


def test_static_batch_input_builds_at_its_own_size():
    assert make_profile("input", [4, 3, 224, 224], 4, None, 4).shapes()[0] == (4, 3, 224, 224)


def test_batch_outside_profile_is_refused_with_the_range():
    assert batch_problem(8, 1, 32) is None and batch_problem(1, 1, 32) is None and batch_problem(32, 1, 32) is None
    assert batch_problem(33, 1, 32) == ("batch 33 is outside the engine's optimization profile "
                                        "(batches 1..32 are allowed)")
    assert "batches 2..16" in batch_problem(1, 2, 16)


def test_compatible_plan_passes():
    assert compatibility_problem(plan_manifest(), "10.13.0.35", "8.9") is None


def test_other_tensorrt_version_is_refused_naming_both():
    problem = compatibility_problem(plan_manifest(), "11.1.0.106", "8.9")
    assert "TensorRT 10.13.0.35" in problem and "TensorRT 11.1.0.106" in problem


def test_other_compute_capability_is_refused_naming_both():
    problem = compatibility_problem(plan_manifest(), "10.13.0.35", "9.0")
    assert "compute capability 8.9" in problem and "compute capability 9.0" in problem and "NVIDIA L4" in problem
    both = compatibility_problem(plan_manifest(), "10.14.1.48", "9.0")
    assert "10.14.1.48" in both and "9.0" in both


def test_compatibility_levels_relax_the_checks():
    version_compat = plan_manifest(version_compatible=True)
    assert compatibility_problem(version_compat, "10.14.1.48", "8.9") is None
    assert "major version 10" in compatibility_problem(version_compat, "11.1.0.106", "8.9")
    assert compatibility_problem(version_compat, "10.12.0.36", "8.9") is not None  # older runtime
    ampere = plan_manifest(hardware_compatibility="ampere+")
    assert compatibility_problem(ampere, "10.13.0.35", "9.0") is None
    assert ">= 8.0" in compatibility_problem(ampere, "10.13.0.35", "7.5")


def test_check_plan_refuses_a_mismatch_with_the_rebuild_command(tmp_path):
    plan = write_fake_plan(tmp_path, plan_manifest())
    assert check_plan(plan, "10.13.0.35", "8.9").gpu["name"] == "NVIDIA L4"
    with pytest.raises(EngineIncompatible) as err:
        check_plan(plan, "10.14.1.48", "8.6")
    assert "10.13.0.35" in err.value.message and "10.14.1.48" in err.value.message
    assert "8.9" in err.value.message and "8.6" in err.value.message
    assert "cnnx build export/nin-fp32.onnx --max-batch 8" in err.value.hint
    assert err.value.exit_code == 2


def test_check_plan_refuses_a_modified_plan_and_non_plans(tmp_path, nin_onnx):
    plan = write_fake_plan(tmp_path, plan_manifest())
    plan.write_bytes(b"tampered")
    with pytest.raises(UsageError, match="does not match its manifest"):
        check_plan(plan, "10.13.0.35", "8.9")
    with pytest.raises(UsageError, match="is an ONNX artifact, not a TensorRT plan"):
        check_plan(nin_onnx, "10.13.0.35", "8.9")


def test_timing_cache_file_naming_reuse_and_atomic_write(tmp_path):
    path = timing_cache_path(tmp_path, "10.13.0.35", "8.9")
    assert path == tmp_path / "timing-cache-trt10.13.0.35-sm89.bin"
    assert timing_cache_path(tmp_path, "10.13.0.35", "9.0") != path  # one cache per GPU architecture
    assert read_timing_cache(path) == b""  # no cache yet: TensorRT starts an empty one
    write_timing_cache(path, memoryview(b"\x01cache"))
    assert read_timing_cache(path) == b"\x01cache"  # reused by the next build
    write_timing_cache(path, b"\x02newer")
    assert read_timing_cache(path) == b"\x02newer"

    class Exploding:
        def __bytes__(self):
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_timing_cache(path, Exploding())
    assert read_timing_cache(path) == b"\x02newer"  # a failed write leaves the old cache intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # and no temporary behind


def test_build_command_renders_only_non_defaults():
    assert build_command("export/nin-fp32.onnx") == "cnnx build export/nin-fp32.onnx"
    assert build_command("a.onnx", min_batch=2, opt_batch=4, max_batch=8, workspace_mib=2048, optimization_level=5,
                         timing_cache=False, tf32=False, hardware_compatibility="ampere+", version_compatible=True,
                         out_dir="plans", progress=print) == (
        "cnnx build a.onnx --min-batch 2 --opt-batch 4 --max-batch 8 --workspace 2048 --opt-level 5 "
        "--no-timing-cache --no-tf32 --hardware-compat ampere+ --version-compatible --out plans")


def test_parser_errors_name_the_node():
    text = format_parser_errors([
        {"desc": "Unsupported operator LRN3D", "code": "UNSUPPORTED_NODE", "node": 12, "node_name": "/features/lrn",
         "node_operator": "LRN3D"},
        {"desc": "failed to load model", "code": "MODEL_DESERIALIZE_FAILED", "node": -1, "node_name": "",
         "node_operator": ""},
    ])
    assert text.splitlines() == ["node 12 '/features/lrn' (LRN3D): [UNSUPPORTED_NODE] Unsupported operator LRN3D",
                                 "[MODEL_DESERIALIZE_FAILED] failed to load model"]


def test_batch_profile_round_trip():
    p = BatchProfile("input", (3, 224, 224), 1, 8, 32)
    assert p.to_dict() == {"input": "input", "min": [1, 3, 224, 224], "opt": [8, 3, 224, 224],
                           "max": [32, 3, 224, 224], "min_batch": 1, "opt_batch": 8, "max_batch": 32}


# ---------------------------------------------------------------------------------------------------------------
# CPU: ONNX Runtime GPU providers and `cnnx doctor` tell the truth about this machine
# ---------------------------------------------------------------------------------------------------------------


def test_ort_gpu_providers_say_why_not():
    import onnxruntime as ort

    for kind, provider in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
        reason = provider_unavailable_reason(kind)
        if provider not in ort.get_available_providers():
            assert provider in reason and "onnxruntime-gpu" in reason
    if provider_unavailable_reason("cuda"):
        with pytest.raises(BackendUnavailable, match="onnxruntime-cuda is unavailable"):
            OnnxRuntimeCudaRunner("unused.onnx")
    assert ort_profile_options("input", (3, 224, 224), 1, 8, 32) == {
        "trt_profile_min_shapes": "input:1x3x224x224", "trt_profile_opt_shapes": "input:8x3x224x224",
        "trt_profile_max_shapes": "input:32x3x224x224"}


def test_doctor_json_tells_the_truth(run_cli):
    import importlib.util

    import torch

    result = run_cli("doctor", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    backends = report["backends"]
    assert set(backends) >= {"torch", "onnxruntime", "openvino", "tensorrt", "onnxruntime-cuda",
                             "onnxruntime-tensorrt", "torch-cudagraph"}
    assert backends["tensorrt"] == {"usable": unavailable_reason() is None, "reason": unavailable_reason()}
    assert report["tensorrt"]["installed"] == (importlib.util.find_spec("tensorrt") is not None)
    assert (report["gpu"] is None) == (not torch.cuda.is_available())
    assert report["torch"]["version"] == torch.__version__
    if importlib.util.find_spec("openvino") is not None:
        assert report["openvino"]["installed"] and "CPU" in report["openvino"]["devices"]
        assert backends["openvino"]["usable"]
    assert backends["onnxruntime"]["usable"] and "CPUExecutionProvider" in report["onnxruntime"]["providers"]


def test_doctor_text_lists_every_backend_with_the_reason(run_cli):
    result = run_cli("doctor")
    assert result.exit_code == 0
    flat = " ".join(result.stdout.split())
    for name in ("torch", "onnxruntime", "openvino", "tensorrt"):
        assert name in flat
    reason = unavailable_reason()
    if reason:
        assert " ".join(reason.split())[:60] in flat  # markup-like text such as [gpu] is shown, not eaten


# ---------------------------------------------------------------------------------------------------------------
# GPU + TensorRT (skipped here with the reason)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensorrt_ready():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"TensorRT tests need TensorRT and a CUDA GPU: {reason}")


@pytest.fixture(scope="module")
def resnet18_artifacts(tensorrt_ready, tmp_path_factory) -> dict:
    from cnnx.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("resnet18")
    results = export_model(ExportOptions("resnet18", precisions=("fp32", "fp16", "int8"), out_dir=out,
                                         calib_data="samples", target="onnx", int8_target="tensorrt"))
    return {r.manifest.precision: r.path for r in results}


@pytest.fixture(scope="module")
def resnet18_engines(resnet18_artifacts, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("engines")
    from cnnx.backends.tensorrt.build import build_engine

    return {precision: build_engine(path, out_dir=out, max_batch=8, tf32=precision != "fp32")
            for precision, path in resnet18_artifacts.items()}


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_resnet18_engine_parity_against_eager(resnet18_engines, precision):
    from cnnx import parity
    from cnnx.models.registry import get_spec
    from cnnx.backends.tensorrt.runner import TensorRTRunner
    from cnnx.check import check_data, compare_runner, eager_model

    plan, manifest = resnet18_engines[precision]
    assert plan.name == f"resnet18-{precision}-b1-8.plan" and manifest_path(plan).is_file()
    assert manifest.tensorrt["version"] and manifest.compute_capability
    runner = TensorRTRunner(plan)
    # int8 is judged on photos only, as export's own int8 check is (no random noise)
    data = check_data(eager_model("resnet18", {"source": "seed", "seed": 0}), get_spec("resnet18"),
                      random_inputs=0 if precision == "int8" else 2)
    failures, metrics, per_batch = compare_runner(data, runner, parity.DEFAULT_THRESHOLDS[precision])
    assert not failures, (failures, metrics)
    assert set(per_batch) == {"1", str(len(data.expected))}


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_resnet18_batch_range_torch_input_bench_and_reload(resnet18_engines):
    import torch

    from cnnx.backends.tensorrt.runner import TensorRTRunner
    from cnnx.bench.timing import time_loop

    plan, _ = resnet18_engines["fp32"]
    runner = TensorRTRunner(plan)
    x = np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)
    full = runner(x)
    assert full.shape == (8, 1000) and full.dtype == np.float32
    np.testing.assert_allclose(runner(x[:1]), full[:1], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(runner(torch.from_numpy(x).cuda()), full, rtol=1e-3, atol=1e-3)
    with pytest.raises(UsageError, match=r"batches 1\.\.8"):
        runner(np.zeros((9, 3, 224, 224), np.float32))
    stats = time_loop(runner.compute_step(x), batch=8, warmup_ms=50, duration_s=0.2, min_iters=5)
    assert stats.iterations >= 5 and stats.median_ms > 0
    graph_stats = time_loop(runner.cuda_graph_step(x), batch=8, warmup_ms=50, duration_s=0.2, min_iters=5)
    assert graph_stats.median_ms > 0
    assert time_loop(runner.end_to_end_step(x), batch=8, warmup_ms=50, duration_s=0.2, min_iters=5).iterations >= 5
    np.testing.assert_allclose(runner(x), full, rtol=1e-3, atol=1e-3)  # graph capture left the runner usable
    reloaded = TensorRTRunner(plan)  # a fresh deserialization from disk
    np.testing.assert_array_equal(reloaded(x), full)


# ---------------------------------------------------------------------------------------------------------------
# CPU: the build sequence against a recording stand-in for the tensorrt module (names checked by the AST test)
# ---------------------------------------------------------------------------------------------------------------


def fake_tensorrt(calls: list, parse_ok: bool = True):
    from types import SimpleNamespace

    class ILogger:
        ERROR, WARNING = 1, 2

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    class Cache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return self.data + b"+"

    class Config:
        progress_monitor = None

        def __init__(self):
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def clear_flag(self, flag):
            calls.append(("clear_flag", flag))

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def create_timing_cache(self, data):
            calls.append(("timing_cache_in", bytes(data)))
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            calls.append(("profile", profile.shapes))
            return 0

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            self.shapes = (name, tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            monitor = config.progress_monitor
            monitor.phase_start("Building engine", None, 2)
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
            return memoryview(b"PLAN-BYTES")

    class ParserError:
        def desc(self):
            return "Unsupported operator Foo"

        def code(self):
            return "UNSUPPORTED_NODE"

        def node(self):
            return 7

        def node_name(self):
            return "/foo"

        def node_operator(self):
            return "Foo"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse", path))
            return parse_ok

        def get_error(self, i):
            return ParserError()

    return SimpleNamespace(
        __version__="10.13.0.35", ILogger=ILogger, IProgressMonitor=IProgressMonitor, Builder=Builder,
        OnnxParser=OnnxParser, NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"),
        BuilderFlag=SimpleNamespace(TF32="TF32", VERSION_COMPATIBLE="VERSION_COMPATIBLE"),
        HardwareCompatibilityLevel=SimpleNamespace(AMPERE_PLUS="AMPERE_PLUS", SAME_COMPUTE_CAPABILITY="SAME_CC"))


@pytest.fixture
def fake_trt_machine(monkeypatch):
    import cnnx.hardware
    from cnnx.backends.tensorrt import build

    calls: list = []
    monkeypatch.setattr(build, "unavailable_reason", lambda: None)
    monkeypatch.setattr(build, "require_tensorrt", lambda: fake_tensorrt(calls))
    monkeypatch.setattr(cnnx.hardware, "gpu_info", lambda: {"name": "NVIDIA L4", "compute_capability": "8.9",
                                                           "cuda": "12.8", "driver": "570.1", "memory_gib": 22.0})
    return calls


def test_build_sequence_plan_manifest_and_timing_cache(nin_onnx, tmp_path, fake_trt_machine):
    calls, stages = fake_trt_machine, []
    out = tmp_path / "engines"
    from cnnx.backends.tensorrt.build import build_engine

    plan, manifest = build_engine(nin_onnx, out_dir=out, max_batch=8, workspace_mib=1024, tf32=False,
                                              hardware_compatibility="ampere+", progress=stages.append)
    assert plan == out / "nin-fp32-b1-8.plan"
    assert plan.read_bytes() == b"PLAN-BYTES"  # TensorRT's bytes only, nothing prepended
    assert read_manifest(plan) == manifest
    assert json.loads(manifest_path(plan).read_text())["kind"] == "tensorrt-plan"
    assert manifest.artifact_sha256 == sha256_file(plan)
    assert manifest.tensorrt["version"] == "10.13.0.35"
    assert manifest.gpu == {"name": "NVIDIA L4", "compute_capability": "8.9", "cuda": "12.8", "driver": "570.1"}
    assert manifest.source["onnx_sha256"] == sha256_file(nin_onnx)
    assert manifest.profile["min"] == [1, 3, 224, 224] and manifest.profile["max"] == [8, 3, 224, 224]
    assert manifest.build_flags["tf32"] is False
    assert manifest.build_flags["hardware_compatibility"] == "ampere+"
    assert manifest.rebuild_command.startswith(f"cnnx build {nin_onnx} --max-batch 8 --workspace 1024")
    assert manifest.preprocess == read_manifest(nin_onnx).preprocess  # the runtime classifies with a plan too
    assert ("network_flags", 1 << 1) in calls  # STRONGLY_TYPED on a 10.x
    assert ("workspace", "WORKSPACE", 1024 << 20) in calls and ("clear_flag", "TF32") in calls
    name = describe_onnx(nin_onnx).input_name
    assert ("profile", (name, (1, 3, 224, 224), (8, 3, 224, 224), (8, 3, 224, 224))) in calls
    assert any("Building engine 1/2" in s for s in stages)
    cache = timing_cache_path(out, "10.13.0.35", "8.9")
    assert cache.read_bytes() == b"+" and ("timing_cache_in", b"") in calls  # first build: an empty cache
    calls.clear()
    build_engine(nin_onnx, out_dir=out, max_batch=8)
    assert ("timing_cache_in", b"+") in calls and cache.read_bytes() == b"++"  # reused, then extended
    assert ("clear_flag", "TF32") not in calls
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["nin-fp32-b1-8.plan", "nin-fp32-b1-8.json", cache.name])  # no temporaries left behind


def test_build_reports_parser_errors_node_by_node(nin_onnx, tmp_path, monkeypatch, fake_trt_machine):
    from cnnx.backends.tensorrt import build

    monkeypatch.setattr(build, "require_tensorrt", lambda: fake_tensorrt([], parse_ok=False))
    with pytest.raises(UsageError) as err:
        build.build_engine(nin_onnx, out_dir=tmp_path / "engines")
    assert "node 7 '/foo' (Foo): [UNSUPPORTED_NODE] Unsupported operator Foo" in err.value.message
    assert not list((tmp_path / "engines").glob("*.plan"))
