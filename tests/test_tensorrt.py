"""TensorRT backend: API surface (every release it claims), the CPU-testable logic, the build/run paths against
stand-ins for TensorRT and CUDA (tests/trt_fakes.py), and GPU tests that skip with the reason."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cnnx.artifacts import sha256_file
from cnnx.backends import tensorrt as trt_backend
from cnnx.backends.onnxruntime_gpu import OnnxRuntimeCudaRunner, ort_profile_options, provider_unavailable_reason
from cnnx.backends.tensorrt import unavailable_reason
from cnnx.backends.tensorrt.build import build_command, describe_onnx, format_parser_errors
from cnnx.backends.tensorrt.plan import (
    BatchProfile,
    EngineIncompatible,
    batch_problem,
    check_plan,
    compatibility_problem,
    make_profile,
    read_timing_cache,
    timing_cache_path,
    write_timing_cache,
)
from cnnx.errors import BackendUnavailable, UsageError
from cnnx.export import engines
from cnnx.export.engines import engine_for_artifact
from cnnx.manifest import manifest_path, read_manifest
from cnnx.naming import plan_filename
from plans import plan_manifest, write_fake_plan
from trt_fakes import DataType, FakeCuda, FakeTensorRT, IOTensor, TimingCache, cuda_tensor, expected_logits

ROOT = Path(__file__).parents[1]
BINDINGS = Path(__file__).parent / "data" / "tensorrt_api" / "bindings.txt"
SOURCES = sorted(Path(trt_backend.__file__).parent.glob("*.py"))

# ---------------------------------------------------------------------------------------------------------------
# API surface: every tensorrt name the backend touches is bound by every TensorRT release from the oldest one
# cnnx supports (pyproject's floor) to the newest listed; names newer than the floor only behind a version check.
# ---------------------------------------------------------------------------------------------------------------

# Names (function parameters, attributes) that hold TensorRT objects where the scan cannot see an assignment.
OBJECT_CLASSES = {"builder": "Builder", "config": "IBuilderConfig", "parser": "OnnxParser",
                  "parser_error": "ParserError", "profile": "IOptimizationProfile", "runtime": "Runtime",
                  "engine": "ICudaEngine", "context": "IExecutionContext", "network": "INetworkDefinition"}
# What TensorRT calls return (so chains such as config.get_timing_cache().serialize() are checked too).
RETURNS = {"Builder.create_network": "INetworkDefinition", "Builder.create_builder_config": "IBuilderConfig",
           "Builder.create_optimization_profile": "IOptimizationProfile",
           "IBuilderConfig.create_timing_cache": "ITimingCache", "IBuilderConfig.get_timing_cache": "ITimingCache",
           "OnnxParser.get_error": "ParserError", "Runtime.deserialize_cuda_engine": "ICudaEngine",
           "ICudaEngine.create_execution_context": "IExecutionContext", "ICudaEngine.get_tensor_dtype": "DataType"}
# pybind11 gives every enum value .name and .value; they are not in the binding sources, so not in the lists.
ENUM_BUILTINS = {("DataType", "name"), ("DataType", "value")}
# Legacy names cnnx must never call, whatever object they are on (binding-index API, pre-v3 execution).
LEGACY = {"execute_v2", "execute_async_v2", "execute_async", "execute", "get_binding_shape", "get_binding_dtype",
          "get_binding_index", "get_binding_name", "binding_is_input", "num_bindings", "set_binding_shape",
          "get_binding_vectorized_dim", "max_batch_size", "build_engine", "max_workspace_size"}


def load_bindings(path: Path = BINDINGS) -> tuple[list[str], dict[str, set[str]], dict[str, str]]:
    """(releases oldest first, release -> names it binds, release -> source commit) from the compact file."""
    releases, counts, commits, names = [], {}, {}, {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("@ "):
            _, version, _ref, commit, _date, count = line.split()
            releases.append(version)
            counts[version], commits[version], names[version] = int(count), commit, set()
            continue
        name, spans = line.split()
        for span in spans.split(","):
            first, _, last = span.partition("-")
            for version in releases[releases.index(first):releases.index(last or first) + 1]:
                names[version].add(name)
    assert {v: len(n) for v, n in names.items()} == counts, "bindings.txt does not match its own header"
    return releases, names, commits


def declared_floor() -> str:
    """The oldest TensorRT pyproject.toml admits (its gpu extra)."""
    match = re.search(r'"tensorrt>=([\d.]+)', (ROOT / "pyproject.toml").read_text())
    assert match, "pyproject.toml declares no tensorrt floor"
    return match.group(1)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def trt_chain(node: ast.AST) -> str | None:
    """'A.B' for an expression trt.A.B, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt" and parts:
        return ".".join(reversed(parts))
    return None


def used_api(source: str) -> tuple[set[str], set[str], set[str]]:
    """(tensorrt names used, as 'Name' / 'Enum.VALUE' / 'Class.member'; every attribute name used on a
    TensorRT object, for the legacy check; 'Class.method' for every method defined in a subclass of a TensorRT
    class). TensorRT objects are recognised by name (OBJECT_CLASSES), by assignment from a constructor
    (trt.Builder(...)) or from a call that returns one (RETURNS), including chained calls, and `self._x = value`
    carries the value's class to `self._x`."""
    tree = ast.parse(source)
    types = dict(OBJECT_CLASSES)

    def key(node) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return node.attr.lstrip("_")
        return None

    def type_of(node) -> str | None:
        if key(node) is not None:
            return types.get(key(node))
        if isinstance(node, ast.Call):
            chain = trt_chain(node.func)
            if chain is not None:
                return chain if "." not in chain else None  # trt.Builder(...) -> Builder
            if isinstance(node.func, ast.Attribute):
                owner = type_of(node.func.value)
                return RETURNS.get(f"{owner}.{node.func.attr}") if owner else None
        return None

    assignments = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    assignments += list(zip(target.elts, node.value.elts))
                else:
                    assignments.append((target, node.value))
    changed = True
    while changed:  # propagate through chains of assignments
        changed = False
        for target, value in assignments:
            name, cls = key(target), type_of(value)
            if name is not None and cls is not None and name not in types:
                types[name] = cls
                changed = True

    used, members, overrides = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = trt_chain(node)
            if chain is not None:
                used.add(chain)
                continue
            owner = type_of(node.value)
            if owner is not None and (owner, node.attr) not in ENUM_BUILTINS:
                used.add(f"{owner}.{node.attr}")
                members.add(node.attr)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                                                                                                   "hasattr"):
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value,
                                                                                              str):
                target = node.args[0]
                prefix = "" if isinstance(target, ast.Name) and target.id == "trt" else trt_chain(target)
                if prefix is not None:
                    used.add(f"{prefix}.{node.args[1].value}".lstrip("."))
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                cls = trt_chain(base)
                if cls is not None:
                    overrides |= {f"{cls}.{f.name}" for f in node.body if isinstance(f, ast.FunctionDef)
                                  and not f.name.startswith("__")}
    # inner chains (trt.A inside trt.A.B) are recorded too, which is right: both must exist. Dunder calls on
    # binding classes (trt.ILogger.__init__) are pybind11/Python, not binding names.
    return {u for u in used if not u.split(".")[-1].startswith("__") or u == "__version__"}, members, overrides


@pytest.fixture(scope="module")
def bindings():
    return load_bindings()


@pytest.fixture(scope="module")
def api_used(bindings) -> tuple[set[str], set[str]]:
    """(names used, attribute names used on TensorRT objects). A method of a subclass counts as a use when
    some release binds that name on the class (a callback TensorRT calls, such as ILogger.log); the
    subclass's own helpers do not."""
    _, names, _ = bindings
    ever_bound = set().union(*names.values())
    used, members = set(), set()
    for source in SOURCES:
        found, attrs, overrides = used_api(source.read_text())
        used |= found | (overrides & ever_bound)
        members |= attrs
    return used, members


def test_api_scan_sees_the_calls_that_matter(api_used):
    used, _ = api_used
    for expected in ("Builder", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "OnnxParser",
                     "OnnxParser.parse_from_file", "MemoryPoolType.WORKSPACE", "BuilderFlag.TF32",
                     "IBuilderConfig.set_timing_cache", "Runtime.deserialize_cuda_engine", "TensorIOMode.INPUT",
                     "IExecutionContext.execute_async_v3", "IExecutionContext.set_tensor_address",
                     "ICudaEngine.get_tensor_profile_shape", "IProgressMonitor",
                     # reached only through chains, assignments and subclasses:
                     "ITimingCache.serialize", "ITimingCache.combine", "ILogger.log", "IProgressMonitor.phase_start",
                     "DataType.BF16", "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"):
        assert expected in used, f"the AST scan no longer sees {expected}: fix the scan or the naming"


def test_api_scan_follows_chained_calls_and_assignments():
    used, _, overrides = used_api(textwrap.dedent("""
        import tensorrt as trt
        data = config.get_timing_cache().serialize()
        rt = trt.Runtime(logger)
        ctx = rt.deserialize_cuda_engine(b"").create_execution_context()
        ctx.execute_async_v3(0)
        self._engine = rt.deserialize_cuda_engine(b"")
        self._engine.num_io_tensors
        self._engine.get_tensor_dtype("x").name
        class Monitor(trt.IProgressMonitor):
            def step_complete(self, phase, step):
                return True
        """))
    assert {"IBuilderConfig.get_timing_cache", "ITimingCache.serialize", "Runtime.deserialize_cuda_engine",
            "ICudaEngine.create_execution_context", "IExecutionContext.execute_async_v3",
            "ICudaEngine.num_io_tensors"} <= used
    assert overrides == {"IProgressMonitor.step_complete"}


def test_every_tensorrt_name_used_is_bound_by_every_supported_release(api_used, bindings):
    """From the oldest release pyproject admits to the newest listed (11.x included), every name the backend
    touches is bound; a name newer than that floor must be in NEWER_NAMES (used only after require_version)
    and bound by every release from the version given there."""
    used, _ = api_used
    releases, names, commits = bindings
    floor = declared_floor()
    assert version_key(floor) == version_key(trt_backend.MIN_VERSION), "pyproject and MIN_VERSION disagree"
    supported = [r for r in releases if version_key(r) >= version_key(floor)]
    assert supported[0] == releases[0] == "10.0" and supported[-1].startswith("11."), supported
    problems = []
    for name in sorted(used):
        since = trt_backend.NEWER_NAMES.get(name, floor)
        missing = [r for r in supported if version_key(r) >= version_key(since) and name not in names[r]]
        if missing:
            problems.append(f"{name} is not bound by TensorRT {', '.join(missing)} (e.g. commit "
                            f"{commits[missing[0]][:12]}); if it is newer than {floor}, use it only after "
                            "require_version and list it in NEWER_NAMES")
    assert not problems, "\n".join(problems)


def test_newer_names_are_gated_at_their_first_release(bindings):
    releases, names, _ = bindings
    for name, since in trt_backend.NEWER_NAMES.items():
        first = next(r for r in releases if name in names[r])
        assert first == since, f"{name} is first bound by {first}, NEWER_NAMES says {since}"
    assert trt_backend.NEWER_NAMES["HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"] == "10.9"


def test_no_name_removed_in_tensorrt_11_and_no_legacy_api_is_used(api_used, bindings):
    used, members = api_used
    releases, names, _ = bindings
    removed = names["10.16"] - names["11.0"]
    assert not used & removed, f"uses names removed in TensorRT 11: {sorted(used & removed)}"
    # belt and braces, independent of the type tracking: no attribute of anything, and no string constant
    # (getattr targets), carries one of these removed names; docstrings and comments may mention them
    nodes = [n for source in SOURCES for n in ast.walk(ast.parse(source.read_text()))]
    attributes = {n.attr for n in nodes if isinstance(n, ast.Attribute)}
    strings = {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for name in ("EXPLICIT_BATCH", "FP16", "INT8_CALIBRATOR", "int8_calibrator", "set_calibration_profile",
                 "platform_has_fast_fp16", "platform_has_fast_int8", "quantization_flags", "supports_model"):
        assert name not in attributes and name not in strings, name
    assert not [a for a in attributes if a.startswith("IInt8")]
    assert not members & LEGACY, f"legacy binding-index / pre-v3 API used: {sorted(members & LEGACY)}"


def test_binding_lists_tell_the_truth(bindings):
    """Facts read from NVIDIA's binding sources that the old hand-made lists got wrong."""
    releases, names, commits = bindings
    assert releases[:3] == ["10.0", "10.0.1", "10.1"] and {"10.16", "11.0", "11.1"} <= set(releases)
    assert all(re.fullmatch(r"[0-9a-f]{40}", c) for c in commits.values())
    for gone in ("BuilderFlag.REJECT_EMPTY_ALGORITHMS", "BuilderFlag.WEIGHTLESS",
                 "ICudaEngine.create_execution_context_without_device_memory",
                 "OnnxParser.parse_with_weight_descriptors", "BuilderFlag.FP16", "BuilderFlag.INT8",
                 "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "IInt8EntropyCalibrator2"):
        assert gone in names["10.16"] and gone not in names["11.0"] and gone not in names["11.1"], gone
    assert "BuilderFlag.DIRECT_IO" in names["11.1"]  # deprecated, not removed
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in names["11.1"]  # deprecated in 11, still bound
    assert "OnnxParser.set_builder_config" not in names["10.14"] and "OnnxParser.set_builder_config" in names["10.15"]
    assert "ICudaEngine.get_profile_shape" in names["10.0"] and "ICudaEngine.get_profile_shape" not in names["10.0.1"]


def test_api_scan_catches_a_removed_name(bindings):
    _, names, _ = bindings
    used, _, _ = used_api("import tensorrt as trt\nconfig = None\nconfig.set_flag(trt.BuilderFlag.FP16)\n"
                       "builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))\n")
    assert {"BuilderFlag.FP16", "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"} <= used - names["11.0"]


def test_version_gate_refuses_same_cc_on_tensorrt_older_than_10_9(nin_onnx, tmp_path, trt_machine):
    """--hardware-compat same-cc uses HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY, bound from 10.9 on:
    on 10.0-10.8 it must be a clear exit 3 naming both versions, not an AttributeError."""
    from cnnx.backends.tensorrt.build import build_engine

    trt_machine.use(FakeTensorRT("10.8.0.43"))
    with pytest.raises(BackendUnavailable) as err:
        build_engine(nin_onnx, out_dir=tmp_path, hardware_compatibility="same-cc")
    assert err.value.exit_code == 3
    assert "TensorRT >= 10.9" in err.value.message and "10.8.0.43" in err.value.message
    assert not list(tmp_path.glob("*.plan"))
    trt_machine.use(FakeTensorRT("10.9.0.34"))
    plan, manifest = build_engine(nin_onnx, out_dir=tmp_path, hardware_compatibility="same-cc")
    assert plan.is_file() and manifest.build_flags["hardware_compatibility"] == "same-cc"


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
    assert outcome.manifest == {"kw": {"max_batch": 8, "reuse": True}}


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
    assert (plain.stem, with_manifest.stem) == ("my-net", "nin-fp32")
    assert plan_filename(plain.stem, 1, 32) == "my-net-b1-32.plan"


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
    runtimes = report["runtimes"]  # one entry per runtime package the registry names, in table order
    assert list(runtimes) == ["torch", "onnxruntime", "openvino", "tensorrt"]
    assert runtimes["tensorrt"]["installed"] == (importlib.util.find_spec("tensorrt") is not None)
    assert (report["gpu"] is None) == (not torch.cuda.is_available())
    assert runtimes["torch"]["version"] == torch.__version__
    assert runtimes["torch"]["cuda_available"] == torch.cuda.is_available()
    if importlib.util.find_spec("openvino") is not None:
        assert runtimes["openvino"]["installed"] and "CPU" in runtimes["openvino"]["devices"]
        assert backends["openvino"]["usable"]
    assert backends["onnxruntime"]["usable"] and "CPUExecutionProvider" in runtimes["onnxruntime"]["providers"]


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
    from cnnx.backends.tensorrt.runner import TensorRTRunner
    from cnnx.models.registry import get_spec
    from cnnx.reference import check_data, compare_runner, eager_model

    plan, manifest = resnet18_engines[precision]
    assert plan.name == f"resnet18-{precision}-b1-8.plan" and manifest_path(plan).is_file()
    assert manifest.tensorrt["version"] and manifest.compute_capability
    runner = TensorRTRunner(plan)
    # int8 is judged on photos only, as export's own int8 check is (no random noise)
    data = check_data(eager_model("resnet18", {"source": "seed", "seed": 0}), get_spec("resnet18"),
                      random_inputs=0 if precision == "int8" else 2)
    failures, metrics, per_batch, _ = compare_runner(data, runner, parity.DEFAULT_THRESHOLDS[precision])
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


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_resnet18_reads_a_cuda_input_only_after_its_producer(resnet18_engines):
    """The real race: the caller's stream is still busy (a spin kernel, then the copy that fills the input)
    when the runner is called; the runner's own stream must wait for it."""
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    plan, _ = resnet18_engines["fp32"]
    runner = TensorRTRunner(plan)
    data = torch.rand(4, 3, 224, 224, device="cuda")
    expected = runner(data.cpu().numpy())
    x = torch.zeros_like(data)
    torch.cuda.synchronize()
    torch.cuda._sleep(500_000_000)  # about a quarter of a second of spinning on the current stream
    x.copy_(data)  # queued behind the spin
    np.testing.assert_allclose(runner(x), expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# CPU: build and run paths against the TensorRT and CUDA stand-ins of tests/trt_fakes.py (outcomes only)
# ---------------------------------------------------------------------------------------------------------------

GPUS = {0: {"name": "NVIDIA L4", "compute_capability": "8.9", "cuda": "12.8", "driver": "570.1", "memory_gib": 22.0},
        1: {"name": "NVIDIA H100", "compute_capability": "9.0", "cuda": "12.8", "driver": "570.1", "memory_gib": 79.0}}


@pytest.fixture
def trt_machine(monkeypatch):
    """This machine as cnnx sees a GPU machine with TensorRT: two GPUs (0: L4 sm 8.9, 1: H100 sm 9.0), the CUDA
    stand-in, and a TensorRT stand-in (`trt_machine.use(FakeTensorRT(...))` swaps it)."""
    import cnnx.hardware
    from cnnx.backends.tensorrt import build, runner

    cuda = FakeCuda(device_count=len(GPUS)).install(monkeypatch)
    monkeypatch.setattr(cnnx.hardware, "gpu_info", lambda device=0: GPUS.get(device))
    machine = SimpleNamespace(cuda=cuda, trt=None)

    def use(fake: FakeTensorRT) -> FakeTensorRT:
        fake.cuda = cuda
        machine.trt = fake
        return fake

    machine.use = use
    for module in (build, runner, engines):
        monkeypatch.setattr(module, "unavailable_reason", lambda: None)
    for module in (build, runner):
        monkeypatch.setattr(module, "require_tensorrt", lambda: machine.trt)
    use(FakeTensorRT())
    return machine


def test_build_writes_plan_manifest_and_timing_cache(nin_onnx, tmp_path, trt_machine):
    from cnnx.backends.tensorrt.build import build_engine

    fake, stages = trt_machine.trt, []
    out = tmp_path / "engines"
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
    assert ("network_flags", 1 << 1) in fake.calls  # STRONGLY_TYPED on a 10.x
    assert any("Building engine 1/2" in s for s in stages)
    cache = timing_cache_path(out, "10.13.0.35", "8.9")
    assert manifest.timing_cache == {"used": True, "reused": False, "path": str(cache)}
    assert read_timing_cache(cache) == b"cache:tactic-1"
    _, again = build_engine(nin_onnx, out_dir=out, max_batch=8)
    assert again.timing_cache["reused"] and read_timing_cache(cache) == b"cache:tactic-1,tactic-2"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["nin-fp32-b1-8.plan", "nin-fp32-b1-8.json", cache.name, cache.name + ".lock"])  # no temporaries


def test_build_reports_parser_errors_node_by_node(nin_onnx, tmp_path, trt_machine):
    from cnnx.backends.tensorrt.build import build_engine

    trt_machine.use(FakeTensorRT(parse_ok=False))
    with pytest.raises(UsageError) as err:
        build_engine(nin_onnx, out_dir=tmp_path / "engines")
    assert "node 7 '/foo' (Foo): [UNSUPPORTED_NODE] Unsupported operator Foo" in err.value.message
    assert not list((tmp_path / "engines").glob("*.plan"))


def test_one_logger_for_every_builder_parser_and_runtime(nin_onnx, tmp_path, trt_machine):
    """One process-wide logger (as Polygraphy keeps): every Builder, OnnxParser and Runtime gets the same one,
    warnings reach the caller's echo, and a failed build quotes its own error, not an earlier build's."""
    from cnnx.backends.tensorrt.build import build_engine
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    fake = trt_machine.trt
    plan, _ = build_engine(nin_onnx, out_dir=tmp_path, max_batch=8)
    build_engine(nin_onnx, out_dir=tmp_path / "second", max_batch=8)
    TensorRTRunner(plan)
    assert len(fake.loggers) == 5 and len({id(logger) for logger in fake.loggers}) == 1
    fake.build_error = "out of memory while timing tactics"
    with pytest.raises(UsageError, match="out of memory while timing tactics"):
        build_engine(nin_onnx, out_dir=tmp_path)
    fake.build_error = "unsupported data type"
    echoed = []
    with pytest.raises(UsageError) as err:
        build_engine(nin_onnx, out_dir=tmp_path, warn=echoed.append)
    assert "unsupported data type" in err.value.message and "out of memory" not in err.value.message
    assert echoed == ["TensorRT: unsupported data type"]


def test_timing_cache_creation_failure_does_not_fail_the_build(nin_onnx, tmp_path, trt_machine):
    """create_timing_cache may return None (NVIDIA's own tools check for it): build without a cache and say so."""
    from cnnx.backends.tensorrt.build import build_engine

    trt_machine.use(FakeTensorRT(cache_creation_fails=True))
    plan, manifest = build_engine(nin_onnx, out_dir=tmp_path, max_batch=8)
    assert plan.read_bytes() == b"PLAN-BYTES"
    assert manifest.timing_cache["used"] is False and "could not create" in manifest.timing_cache["reason"]
    assert not timing_cache_path(tmp_path, "10.13.0.35", "8.9").exists()


def test_timing_cache_keeps_entries_written_by_a_concurrent_build(nin_onnx, tmp_path, trt_machine):
    """Another build (cnnx, trtexec, Polygraphy) that saved the cache while ours ran must not lose its entries:
    the file is re-read and combined under the lock, not overwritten with what this build started from."""
    from cnnx.backends.tensorrt.build import build_engine

    cache = timing_cache_path(tmp_path, "10.13.0.35", "8.9")
    write_timing_cache(cache, b"cache:old")
    trt_machine.use(FakeTensorRT(during_build=lambda: write_timing_cache(cache, b"cache:old,other-process")))
    build_engine(nin_onnx, out_dir=tmp_path, max_batch=8)
    assert TimingCache.parse(read_timing_cache(cache)).entries == {"old", "other-process", "tactic-1"}


LOCK_HOLDER = """
import fcntl, sys, time
from pathlib import Path
cache = Path(sys.argv[1])
with open(str(cache) + ".lock", "a+b") as handle:
    fcntl.lockf(handle, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(0.5)
    cache.write_bytes(b"cache:written-under-the-lock")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX record locks")
def test_timing_cache_merge_waits_for_another_process_holding_the_lock(nin_onnx, tmp_path, trt_machine):
    """A process that holds <cache>.lock (as trtexec and Polygraphy take it) is waited for, and what it wrote
    under the lock is merged, not overwritten (nor does it overwrite ours)."""
    from cnnx.backends.tensorrt.build import build_engine

    cache = timing_cache_path(tmp_path, "10.13.0.35", "8.9")
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(cache)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        build_engine(nin_onnx, out_dir=tmp_path, max_batch=8)
    finally:
        holder.wait(timeout=30)
    assert TimingCache.parse(read_timing_cache(cache)).entries == {"written-under-the-lock", "tactic-1"}


def test_engine_for_artifact_reuses_a_matching_plan_and_rebuilds_otherwise(nin_onnx, tmp_path, trt_machine,
                                                                          monkeypatch):
    fake = trt_machine.trt
    out = tmp_path / "engines"
    first = engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out)
    plan = Path(first.plan)
    again = engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out)
    assert fake.builds == 1 and again.plan == first.plan and again.manifest == first.manifest
    engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out, tf32=False)  # another flag
    assert fake.builds == 2
    engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out, tf32=False)
    assert fake.builds == 2
    trt_machine.use(FakeTensorRT("10.14.1.48"))  # another TensorRT
    engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out, tf32=False)
    assert trt_machine.trt.builds == 1
    monkeypatch.setitem(GPUS, 0, {**GPUS[0], "name": "NVIDIA L40S"})  # another GPU, same compute capability
    engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out, tf32=False)
    assert trt_machine.trt.builds == 2
    plan.write_bytes(b"damaged")  # no longer matches its manifest
    engine_for_artifact(nin_onnx, "auto", max_batch=8, out_dir=out, tf32=False)
    assert trt_machine.trt.builds == 3 and read_manifest(plan).artifact_sha256 == sha256_file(plan)
    import onnx

    other = tmp_path / "nin-fp32.onnx"  # a bare ONNX file that maps to the same plan name, other bytes
    proto = onnx.load(str(nin_onnx))
    proto.doc_string = "exported again"
    onnx.save(proto, str(other))
    engine_for_artifact(other, "auto", max_batch=8, out_dir=out, tf32=False)
    assert trt_machine.trt.builds == 4


def test_bench_and_check_runners_reuse_the_plan(nin_onnx, tmp_path, trt_machine, monkeypatch):
    """The registry's tensorrt entry opens an ONNX artifact through a plan, as bench asks per (precision, batch)
    case and check per file: one build, then reuse."""
    from cnnx.backends import BACKENDS, RunOptions

    monkeypatch.chdir(tmp_path)
    runners = [BACKENDS["tensorrt"].open(nin_onnx, RunOptions(max_batch=8)) for _ in range(3)]
    assert trt_machine.trt.builds == 1
    x = torch.rand(2, 3, 224, 224)
    np.testing.assert_allclose(runners[-1](x.numpy()), expected_logits(x).numpy(), rtol=1e-6)


@pytest.fixture
def fake_plan(tmp_path):
    def make(cc="8.9", gpu="NVIDIA L4", output="logits"):
        from dataclasses import replace

        from cnnx.manifest import TensorSpec

        manifest = replace(plan_manifest(cc=cc, gpu=gpu), output=TensorSpec(output, ("batch", 1000)))
        return write_fake_plan(tmp_path, manifest)

    return make


def test_runner_waits_for_the_stream_that_produced_a_cuda_input(trt_machine, fake_plan):
    """A CUDA tensor produced on the caller's stream must be read only after that work: the runner's own stream
    waits for it (PyTorch's CUDA semantics), so the logits are those of the produced data, not stale memory."""
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    runner = TensorRTRunner(fake_plan())
    data = torch.rand(2, 3, 224, 224)
    x = cuda_tensor(torch.zeros(2, 3, 224, 224))
    trt_machine.cuda.current_stream().enqueue(lambda: x.copy_(data))  # the producer's kernel, not yet run
    np.testing.assert_allclose(runner(x), expected_logits(data).numpy(), rtol=1e-6)


def test_runner_binds_every_output_and_returns_the_logits_as_float32(trt_machine, fake_plan):
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    trt_machine.use(FakeTensorRT(io=(IOTensor("images", True, DataType.HALF, (3, 224, 224)),
                                     IOTensor("aux", False, DataType.INT32, (7,)),
                                     IOTensor("logits", False, DataType.HALF, (1000,)))))
    runner = TensorRTRunner(fake_plan())
    x = torch.rand(3, 3, 224, 224)
    out = runner(x.numpy())
    assert out.dtype == np.float32 and out.shape == (3, 1000)
    expected = expected_logits(x.half()).half().float().numpy()  # fp16 input and logits, as the plan says
    np.testing.assert_allclose(out, expected, rtol=1e-3)


@pytest.mark.parametrize("io, message", [
    ((IOTensor("images", True, DataType.FLOAT, (3, 224, 224)), IOTensor("a", False, DataType.FLOAT, (1000,)),
      IOTensor("b", False, DataType.FLOAT, (1000,))), "names none of them"),
    ((IOTensor("images", True, DataType.INT8, (3, 224, 224)), IOTensor("logits", False, DataType.FLOAT, (1000,))),
     "input tensor 'images' is INT8"),
    ((IOTensor("images", True, DataType.FLOAT, (3, 224, 224)), IOTensor("logits", False, DataType.FP8, (1000,))),
     "logits tensor 'logits' is FP8"),
    ((IOTensor("images", True, DataType.FLOAT, (3, 224, 224)), IOTensor("mask", True, DataType.FLOAT, (1,)),
      IOTensor("logits", False, DataType.FLOAT, (1000,))), "one input"),
])
def test_runner_refuses_plans_it_cannot_bind_clearly(trt_machine, fake_plan, io, message):
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    trt_machine.use(FakeTensorRT(io=io))
    with pytest.raises(UsageError, match=message):
        TensorRTRunner(fake_plan())


def test_runner_honours_the_device_it_is_given(trt_machine, fake_plan):
    """A plan built on the H100 (GPU 1) loads and runs on GPU 1 even though GPU 0 is another architecture;
    the plan is checked against the GPU it will run on."""
    from cnnx.backends.tensorrt.runner import TensorRTRunner

    plan = fake_plan(cc="9.0", gpu="NVIDIA H100")
    runner = TensorRTRunner(plan, device=1)
    x = torch.rand(2, 3, 224, 224)
    np.testing.assert_allclose(runner(x.numpy()), expected_logits(x).numpy(), rtol=1e-6)
    assert trt_machine.cuda.current == 0  # the caller's current device is left as it was
    with pytest.raises(EngineIncompatible, match="compute capability 8.9"):
        TensorRTRunner(plan, device=0)
    with pytest.raises(UsageError, match="no CUDA device 5"):
        TensorRTRunner(plan, device=5)


def test_ort_tensorrt_runner_gets_the_explicit_profile_and_no_precision_flags(nin_onnx, tmp_path, monkeypatch):
    """The runner bench and check open (OnnxRuntimeTensorRTRunner.open) carries the input's name and dims, so ORT's
    TensorRT provider builds one engine for the whole batch range; no trt_fp16/int8 flag, so the network stays
    strongly typed (the ONNX file's precision). ORT's GPU provider itself cannot start here: its start is recorded."""
    from cnnx.backends import RunOptions
    from cnnx.backends.onnxruntime_gpu import OnnxRuntimeTensorRTRunner, _GpuProviderRunner

    started = {}
    monkeypatch.setattr(_GpuProviderRunner, "_start", lambda self, model, providers: started.update(
        model=model, providers=providers))
    monkeypatch.chdir(tmp_path)
    OnnxRuntimeTensorRTRunner.open(nin_onnx, RunOptions(max_batch=16))
    name, options = started["providers"][0]
    assert name == "TensorrtExecutionProvider"
    assert options["trt_profile_min_shapes"] == "images:1x3x224x224"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "images:16x3x224x224"
    assert options["trt_fp16_enable"] is False and options["trt_int8_enable"] is False
    assert options["trt_engine_cache_enable"] and (tmp_path / "engines" / "ort-trt-cache").is_dir()
