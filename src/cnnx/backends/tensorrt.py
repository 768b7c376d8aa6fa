"""TensorRT backend: build a plan from a cnnx ONNX artifact, check it, run it. Kept thin and isolated.

Every precision decision already happened in the ONNX file (fp32, fp16 graph, int8 Q/DQ graph), so the build
is always *strongly typed* and sets no precision flags: one code path serves TensorRT 10.x and 11.x (11.x removed
BuilderFlag.FP16/INT8, the implicit calibrators and EXPLICIT_BATCH; see shared/reference/tensorrt.md).

`tensorrt` and CUDA are imported lazily, inside the functions that need them: everything else here (naming,
profile checks, manifest compatibility, timing-cache files, the rebuild command) is pure Python that the CPU
test suite exercises. tests/test_tensorrt.py parses this file and checks every `trt.*` name it touches against
the 10.x and 11.x binding lists in tests/data/tensorrt_api/; keep the variable names `builder`, `network`,
`parser`, `config`, `profile`, `engine`, `context`, `runtime` for TensorRT objects so that check can see them.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts import (MANIFEST_FORMAT, atomic_path, manifest_path, prepare_output_dir, read_manifest,
                         sha256_file, tool_versions, utc_now, write_json)
from ..errors import BackendUnavailable, UsageError
from .base import Runner

ENGINE_KIND = "tensorrt-plan"
DEFAULT_OUT_DIR = "engines"
HARDWARE_COMPAT = ("ampere+", "same-cc")  # trt.HardwareCompatibilityLevel.AMPERE_PLUS / SAME_COMPUTE_CAPABILITY
TARGETS = ("auto", "tensorrt", "onnx")
Progress = Callable[[str], None]

# ---------------------------------------------------------------------------------------------------------------
# Availability
# ---------------------------------------------------------------------------------------------------------------


def unavailable_reason() -> str | None:
    """Why no TensorRT engine can be built or run here, or None when TensorRT and a CUDA GPU are usable."""
    if importlib.util.find_spec("tensorrt") is None:
        return ("the tensorrt package is not installed (its wheels come from NVIDIA's package index: "
                "pip install -e '.[gpu]' on a machine with an NVIDIA GPU)")
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # installed but broken: missing libnvinfer, CUDA mismatch, ...
        return f"the tensorrt package is installed but cannot be imported ({exc.__class__.__name__}: {exc})"
    import torch

    if torch.version.cuda is None:
        return (f"PyTorch {torch.__version__} is a CPU-only build; cnnx moves TensorRT's input/output buffers "
                "through PyTorch CUDA tensors, so install a CUDA build of torch")
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch on this machine"
    return None


def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None (no import attempted when the package is missing)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt as trt
    except Exception:
        return None
    return str(trt.__version__)


def _require_tensorrt():
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"TensorRT is unavailable: {reason}",
                                 "build and run engines on a machine with an NVIDIA GPU and TensorRT")
    import tensorrt as trt

    return trt


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers: names, profiles, compatibility, timing cache, commands
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchProfile:
    """The one optimization profile of an engine: batch range plus the fixed non-batch dims of the input."""

    input_name: str
    dims: tuple[int, ...]  # C, H, W
    min_batch: int
    opt_batch: int
    max_batch: int

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return ((self.min_batch, *self.dims), (self.opt_batch, *self.dims), (self.max_batch, *self.dims))

    def to_dict(self) -> dict:
        lo, opt, hi = self.shapes()
        return {"input": self.input_name, "min": list(lo), "opt": list(opt), "max": list(hi),
                "min_batch": self.min_batch, "opt_batch": self.opt_batch, "max_batch": self.max_batch}


def make_profile(input_name: str, input_shape: list, min_batch: int = 1, opt_batch: int | None = None,
                 max_batch: int = 32) -> BatchProfile:
    """Validate the batch range against the ONNX input: dim 0 must be dynamic (a name or -1), unless the range
    is exactly its static size; every other dim must be static. opt defaults to max (tactics are timed at opt,
    so the largest batch gets the best kernels; pass --opt-batch for latency at small batches)."""
    opt_batch = max_batch if opt_batch is None else opt_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise UsageError(f"batch sizes must satisfy 1 <= min <= opt <= max, got min {min_batch}, opt {opt_batch}, "
                         f"max {max_batch}", "fix --min-batch/--opt-batch/--max-batch")
    if not input_shape:
        raise UsageError(f"input '{input_name}' has no shape in the ONNX file", "re-export the model")
    batch_dim, rest = input_shape[0], list(input_shape[1:])
    if isinstance(batch_dim, int) and batch_dim > 0 and (min_batch, max_batch) != (batch_dim, batch_dim):
        raise UsageError(f"input '{input_name}' has a static batch of {batch_dim}, so the engine cannot cover "
                         f"batches {min_batch}..{max_batch}",
                         f"re-export with a dynamic batch (cnnx export does), or pass --min-batch {batch_dim} "
                         f"--max-batch {batch_dim}")
    dynamic = [i + 1 for i, d in enumerate(rest) if not (isinstance(d, int) and d > 0)]
    if dynamic:
        raise UsageError(f"input '{input_name}' has dynamic non-batch dims (positions {dynamic}: {input_shape}); "
                         "cnnx builds one profile over the batch only", "export with a fixed image size")
    return BatchProfile(input_name, tuple(int(d) for d in rest), min_batch, opt_batch, max_batch)


def batch_problem(batch: int, min_batch: int, max_batch: int) -> str | None:
    """Why `batch` cannot run on an engine built for min..max (None: it can)."""
    if min_batch <= batch <= max_batch:
        return None
    return (f"batch {batch} is outside the engine's optimization profile (batches {min_batch}..{max_batch} "
            "are allowed)")


def plan_filename(model: str, precision: str | None, min_batch: int, max_batch: int) -> str:
    stem = f"{model}-{precision}" if precision else model
    return f"{stem}-b{min_batch}-{max_batch}.plan"


def timing_cache_path(out_dir: str | Path, trt_version: str, compute_capability: str) -> Path:
    """One cache per TensorRT version and GPU architecture: a cache is only valid for the pair that wrote it,
    and engines of every model share it (kernel timings are keyed by layer configuration, not by model)."""
    return Path(out_dir) / f"timing-cache-trt{trt_version}-sm{compute_capability.replace('.', '')}.bin"


def read_timing_cache(path: Path) -> bytes:
    """The stored cache, or b"" (which makes TensorRT start an empty cache) when there is none or it is
    unreadable; a bad cache must never fail a build."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def write_timing_cache(path: Path, data: bytes) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(bytes(data))


def compatibility_problem(manifest: dict, trt_version: str, compute_capability: str) -> str | None:
    """Why a plan (described by its manifest) cannot be deserialized with this TensorRT on this GPU.

    Plans are tied to the exact TensorRT version and the GPU's compute capability, unless they were built
    version-compatible (then any later TensorRT of the same major version loads them) or with a hardware
    compatibility level (ampere+: any GPU of compute capability 8.0 or newer)."""
    built = manifest.get("tensorrt", {})
    flags = manifest.get("build_flags", {})
    problems = []
    built_version = str(built.get("version", "?"))
    if flags.get("version_compatible"):
        if _major(built_version) != _major(trt_version) or _version_key(trt_version) < _version_key(built_version):
            problems.append(f"it is version-compatible from TensorRT {built_version} within major version "
                            f"{_major(built_version)}, but TensorRT {trt_version} is installed")
    elif built_version != str(trt_version):
        problems.append(f"it was built with TensorRT {built_version}, but TensorRT {trt_version} is installed")
    built_cc = str(manifest.get("gpu", {}).get("compute_capability", "?"))
    level = flags.get("hardware_compatibility")
    if level == "ampere+":
        if _version_key(compute_capability) < (8, 0):
            problems.append(f"it was built for Ampere and newer GPUs (compute capability >= 8.0), but this GPU "
                            f"has compute capability {compute_capability}")
    elif built_cc != str(compute_capability):
        gpu_name = manifest.get("gpu", {}).get("name", "another GPU")
        problems.append(f"it was built on {gpu_name} (compute capability {built_cc}), but this GPU has compute "
                        f"capability {compute_capability}")
    return "; ".join(problems) or None


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


BUILD_DEFAULTS = {"min_batch": 1, "opt_batch": None, "max_batch": 32, "workspace_mib": None,
                  "optimization_level": 3, "timing_cache": True, "tf32": True, "hardware_compatibility": None,
                  "version_compatible": False, "out_dir": DEFAULT_OUT_DIR}


def build_command(onnx_path: str | Path, **options) -> str:
    """The `cnnx build` command line that reproduces a build with these options (defaults omitted)."""
    opts = {**BUILD_DEFAULTS, **{k: v for k, v in options.items() if k in BUILD_DEFAULTS}}
    parts = ["cnnx", "build", str(onnx_path)]
    if opts["min_batch"] != 1:
        parts += ["--min-batch", str(opts["min_batch"])]
    if opts["opt_batch"] is not None:
        parts += ["--opt-batch", str(opts["opt_batch"])]
    if opts["max_batch"] != 32:
        parts += ["--max-batch", str(opts["max_batch"])]
    if opts["workspace_mib"] is not None:
        parts += ["--workspace", str(opts["workspace_mib"])]
    if opts["optimization_level"] != 3:
        parts += ["--opt-level", str(opts["optimization_level"])]
    if not opts["timing_cache"]:
        parts.append("--no-timing-cache")
    if not opts["tf32"]:
        parts.append("--no-tf32")
    if opts["hardware_compatibility"]:
        parts += ["--hardware-compat", str(opts["hardware_compatibility"])]
    if opts["version_compatible"]:
        parts.append("--version-compatible")
    if str(opts["out_dir"]) != DEFAULT_OUT_DIR:
        parts += ["--out", str(opts["out_dir"])]
    return " ".join(parts)


def format_parser_errors(errors: list[dict]) -> str:
    """One line per ONNX parser error: node index, name and operator where TensorRT reports them."""
    lines = []
    for e in errors:
        where = []
        if e.get("node", -1) is not None and e.get("node", -1) >= 0:
            where.append(f"node {e['node']}")
        if e.get("node_name"):
            where.append(f"'{e['node_name']}'")
        if e.get("node_operator"):
            where.append(f"({e['node_operator']})")
        prefix = " ".join(where) + ": " if where else ""
        code = f"[{e['code']}] " if e.get("code") else ""
        lines.append(f"{prefix}{code}{e.get('desc', '?')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Reading the ONNX artifact (no TensorRT needed)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnnxSource:
    path: Path
    model: str
    precision: str | None
    input_name: str
    input_shape: list
    manifest: dict | None
    sha256: str


def describe_onnx(onnx_path: str | Path) -> OnnxSource:
    """Model, precision and input of an ONNX file: from its cnnx manifest when it has one (checked against the
    file's bytes), else from the file itself with the file stem as the model name."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise UsageError(f"ONNX file '{path}' does not exist", "export one first: cnnx export MODEL")
    manifest = read_manifest(path) if manifest_path(path).is_file() else None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"'{path}' is not a readable ONNX file ({exc.__class__.__name__}: {str(exc)[:200]})",
                         "re-export it") from None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UsageError(f"'{path}' has {len(inputs)} graph inputs; cnnx engines take exactly one image tensor")
    dims = []
    for d in inputs[0].type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or -1))
    model = manifest["model"] if manifest else path.stem
    precision = manifest["precision"] if manifest else None
    sha = manifest["artifact_sha256"] if manifest else sha256_file(path)
    return OnnxSource(path, model, precision, inputs[0].name, dims, manifest, sha)


# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------


def _make_logger(trt, echo: Callable[[str], None] | None = None):
    """A TensorRT logger that keeps errors for our messages and sends warnings to `echo`, never to stdout
    (trt.Logger prints to stdout, which would corrupt --json output)."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.lock = threading.Lock()

        def log(self, severity, msg):
            level = int(severity)
            if level <= int(trt.ILogger.ERROR):
                with self.lock:
                    self.errors.append(str(msg))
            if echo is not None and level <= int(trt.ILogger.WARNING):
                echo(f"TensorRT: {msg}")

    return CollectingLogger()


def _make_progress_monitor(trt, progress: Progress):
    """Build progress through IProgressMonitor (TensorRT >= 10.0): reports top-level phases and steps."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class PhaseMonitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.parents: dict[str, str | None] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.steps[phase_name] = num_steps
            self.parents[phase_name] = parent_phase
            if parent_phase is None:
                progress(f"building engine: {phase_name}")

        def step_complete(self, phase_name, step):
            if self.parents.get(phase_name) is None:
                progress(f"building engine: {phase_name} {step + 1}/{self.steps.get(phase_name, '?')}")
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            self.steps.pop(phase_name, None)

    return PhaseMonitor()


def build_engine(onnx_path: str | Path, *, out_dir: str | Path = DEFAULT_OUT_DIR, min_batch: int = 1,
                 opt_batch: int | None = None, max_batch: int = 32, workspace_mib: int | None = None,
                 optimization_level: int = 3, timing_cache: bool = True, tf32: bool = True,
                 hardware_compatibility: str | None = None, version_compatible: bool = False,
                 progress: Progress = lambda stage: None,
                 warn: Callable[[str], None] | None = None) -> tuple[Path, dict]:
    """Build a strongly typed TensorRT plan from an ONNX artifact. Returns (plan path, manifest).

    Writes `<out_dir>/<model>-<precision>-b<min>-<max>.plan` and its manifest `<same stem>.json` beside it,
    both atomically; the plan file holds TensorRT's bytes only. Inputs are validated (exit 2) before TensorRT
    availability is checked (exit 3)."""
    source = describe_onnx(onnx_path)
    profile_spec = make_profile(source.input_name, source.input_shape, min_batch, opt_batch, max_batch)
    validate_build_options(workspace_mib, optimization_level, hardware_compatibility)
    options = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch,
               "workspace_mib": workspace_mib, "optimization_level": optimization_level,
               "timing_cache": timing_cache, "tf32": tf32, "hardware_compatibility": hardware_compatibility,
               "version_compatible": version_compatible, "out_dir": str(out_dir)}
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"cannot build a TensorRT engine here: {reason}",
                                 f"on a machine with an NVIDIA GPU and TensorRT, run: "
                                 f"{build_command(source.path, **options)} (the ONNX file is kept)")
    trt = _require_tensorrt()
    from ..machine import gpu_info

    out = prepare_output_dir(out_dir)
    gpu = gpu_info() or {}
    trt_version = str(trt.__version__)
    start = time.perf_counter()

    progress(f"parsing {source.path.name}")
    logger = _make_logger(trt, warn)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None and _major(trt_version) < 11:  # opt-in on 10.x; always on (deprecated) in 11
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UsageError(f"TensorRT's ONNX parser rejected '{source.path}' ({len(errors)} error(s)):\n"
                         + format_parser_errors(errors),
                         "the named node uses an operator or data type this TensorRT cannot parse; "
                         "re-export with another opset, or check the Q/DQ recipe for int8")

    config = builder.create_builder_config()
    if workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    config.builder_optimization_level = int(optimization_level)
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if hardware_compatibility == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif hardware_compatibility == "same-cc":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    monitor = _make_progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor

    cache_file = timing_cache_path(out, trt_version, gpu.get("compute_capability", "unknown"))
    cache_reused = False
    if timing_cache:
        previous = read_timing_cache(cache_file)
        cache = config.create_timing_cache(previous)
        cache_reused = config.set_timing_cache(cache, False) and bool(previous)
        if previous and not cache_reused:  # written by another TensorRT/GPU: start afresh, overwrite later
            config.set_timing_cache(config.create_timing_cache(b""), False)

    profile = builder.create_optimization_profile()
    lo, opt, hi = profile_spec.shapes()
    profile.set_shape(profile_spec.input_name, lo, opt, hi)
    config.add_optimization_profile(profile)

    progress("building engine (kernel timing can take minutes)")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "; ".join(logger.errors[-3:]) or "see TensorRT's log above"
        raise UsageError(f"TensorRT failed to build an engine from '{source.path}': {detail}",
                         "try --workspace with more MiB, or a lower --opt-level; run with --debug for details")
    build_seconds = round(time.perf_counter() - start, 2)

    plan_path = out / plan_filename(source.model, source.precision, min_batch, max_batch)
    with atomic_path(plan_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(memoryview(plan))
    if timing_cache:
        write_timing_cache(cache_file, memoryview(config.get_timing_cache().serialize()))

    manifest = {
        "format": MANIFEST_FORMAT, "kind": ENGINE_KIND, "artifact": plan_path.name,
        "artifact_sha256": sha256_file(plan_path), "artifact_bytes": plan_path.stat().st_size,
        "model": source.model, "precision": source.precision,
        "source": {"onnx": str(source.path), "onnx_sha256": source.sha256,
                   "onnx_manifest": str(manifest_path(source.path)) if source.manifest else None},
        "input": {"name": profile_spec.input_name, "shape": ["batch", *profile_spec.dims], "dtype": "float32"},
        "output": (source.manifest or {}).get("output"),
        "profile": profile_spec.to_dict(),
        "tensorrt": {"version": trt_version, "strongly_typed": True},
        "gpu": {"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability"),
                "cuda": gpu.get("cuda"), "driver": gpu.get("driver")},
        "build_flags": {"workspace_mib": workspace_mib, "optimization_level": optimization_level,
                        "tf32": tf32, "hardware_compatibility": hardware_compatibility,
                        "version_compatible": version_compatible, "precision_flags": "none (strongly typed)"},
        "timing_cache": {"used": timing_cache, "path": str(cache_file) if timing_cache else None,
                         "reused": cache_reused},
        "build_seconds": build_seconds, "rebuild_command": build_command(source.path, **options),
        "tools": tool_versions(), "created": utc_now(),
    }
    write_json(manifest_path(plan_path), manifest)
    return plan_path, manifest


def validate_build_options(workspace_mib: int | None, optimization_level: int,
                           hardware_compatibility: str | None) -> None:
    if workspace_mib is not None and workspace_mib < 1:
        raise UsageError(f"--workspace must be a positive number of MiB, got {workspace_mib}")
    if not 0 <= optimization_level <= 5:
        raise UsageError(f"--opt-level must be 0..5 (TensorRT's builder optimization level), "
                         f"got {optimization_level}")
    if hardware_compatibility not in (None, *HARDWARE_COMPAT):
        raise UsageError(f"unknown hardware compatibility '{hardware_compatibility}'",
                         f"choose from {', '.join(HARDWARE_COMPAT)}")


def _parser_error(parser_error) -> dict:
    """The fields of one ParserError (all bound in 10.x and 11.x): description, code, node index/name/op."""
    return {"desc": str(parser_error.desc()), "code": str(parser_error.code()), "node": int(parser_error.node()),
            "node_name": str(parser_error.node_name()), "node_operator": str(parser_error.node_operator())}


# ---------------------------------------------------------------------------------------------------------------
# `cnnx export --target`
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class EngineOutcome:
    """What `export --target` did about a TensorRT engine for one ONNX artifact."""

    target: str
    built: bool
    plan: str | None = None
    manifest: dict | None = field(default=None, repr=False)
    reason: str | None = None  # why no engine was built
    command: str | None = None  # what to run on a GPU machine instead

    def to_dict(self) -> dict:
        return asdict(self)


def engine_for_artifact(onnx_path: str | Path, target: str = "auto", **build_options) -> EngineOutcome:
    """`auto`: build when TensorRT and a GPU are usable, else report why not and the command for a GPU machine.
    `tensorrt`: build, or raise BackendUnavailable (exit 3) with that reason; the ONNX file stays either way.
    `onnx`: do nothing."""
    if target not in TARGETS:
        raise UsageError(f"unknown target '{target}'", f"choose from {', '.join(TARGETS)}")
    if target == "onnx":
        return EngineOutcome(target, built=False, reason="--target onnx: no engine requested")
    command = build_command(onnx_path, **build_options)
    reason = unavailable_reason()
    if reason:
        if target == "tensorrt":
            raise BackendUnavailable(f"--target tensorrt: cannot build a TensorRT engine here: {reason}",
                                     f"the ONNX artifact '{onnx_path}' is kept; on a machine with an NVIDIA GPU "
                                     f"and TensorRT run: {command}")
        return EngineOutcome(target, built=False, reason=reason, command=command)
    plan, manifest = build_engine(onnx_path, **build_options)
    return EngineOutcome(target, built=True, plan=str(plan), manifest=manifest)


# ---------------------------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------------------------


class EngineIncompatible(UsageError):
    """A plan built for another TensorRT version or GPU (exit 2: the artifact does not fit this machine)."""


def check_plan(plan_path: str | Path, trt_version: str, compute_capability: str) -> dict:
    """The plan's manifest, after refusing a plan that this TensorRT/GPU cannot load."""
    plan_path = Path(plan_path)
    manifest = read_manifest(plan_path)
    if manifest.get("kind") != ENGINE_KIND:
        raise UsageError(f"'{plan_path}' is not a TensorRT plan built by cnnx (manifest kind "
                         f"{manifest.get('kind')!r})", "build one: cnnx build FILE.onnx")
    problem = compatibility_problem(manifest, trt_version, compute_capability)
    if problem:
        command = manifest.get("rebuild_command") or f"cnnx build {manifest.get('source', {}).get('onnx', 'FILE.onnx')}"
        raise EngineIncompatible(f"refusing '{plan_path}': {problem}",
                                 f"rebuild it on this machine: {command}")
    return manifest


_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16"}  # by DataType name; cnnx artifacts keep fp32 I/O


class TensorRTRunner(Runner):
    """Runs a cnnx TensorRT plan: float32 NCHW (numpy or torch) in, float32 logits (numpy) out.

    Buffers are PyTorch CUDA tensors, bound by tensor name; inference runs on its own (non-default) stream.
    For `bench`: `compute_step(x)` times execute_async_v3 alone with CUDA events (returns ms),
    `end_to_end_step(x)` includes host->device and device->host copies (returns None: wall clock), and
    `cuda_graph_step(x)` replays a captured CUDA graph of the enqueue (returns ms)."""

    backend = "tensorrt"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return unavailable_reason()

    def __init__(self, plan_path: str | Path, device: int = 0):
        trt = _require_tensorrt()
        import torch

        from ..machine import gpu_info

        self.plan_path = Path(plan_path)
        gpu = gpu_info() or {}
        self.manifest = check_plan(self.plan_path, str(trt.__version__), str(gpu.get("compute_capability")))
        self.device = torch.device("cuda", device)
        self._logger = _make_logger(trt)
        runtime = trt.Runtime(self._logger)
        if self.manifest.get("build_flags", {}).get("version_compatible"):
            runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if engine is None:
            detail = "; ".join(self._logger.errors[-3:]) or "no detail from TensorRT"
            raise UsageError(f"TensorRT could not deserialize '{self.plan_path}': {detail}",
                             f"rebuild it: {self.manifest.get('rebuild_command', 'cnnx build FILE.onnx')}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise UsageError(f"'{self.plan_path}' has inputs {inputs} and outputs {outputs}; cnnx runs "
                             "single-input classifiers")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._output_dtype = getattr(torch, _TORCH_DTYPES.get(engine.get_tensor_dtype(self.output_name).name,
                                                              "float32"))
        lo, _, hi = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.input_dims = tuple(int(d) for d in list(lo)[1:])
        context = engine.create_execution_context()
        self._runtime, self._engine, self._context = runtime, engine, context
        self.stream = torch.cuda.Stream(device=self.device)
        self._buffers: dict[int, tuple] = {}
        self._bound_batch: int | None = None
        self._graphs: dict[int, tuple] = {}

    # -- buffers and binding ----------------------------------------------------------------------------------
    def _check_batch(self, shape: tuple[int, ...]) -> int:
        if tuple(shape[1:]) != self.input_dims:
            raise UsageError(f"input shape {tuple(shape)} does not match the engine's input "
                             f"(N, {', '.join(map(str, self.input_dims))})")
        problem = batch_problem(int(shape[0]), self.min_batch, self.max_batch)
        if problem:
            raise UsageError(problem, f"rebuild with a wider range: cnnx build ... --max-batch {shape[0]}"
                             if shape[0] > self.max_batch else "use a batch inside the profile")
        return int(shape[0])

    def _bind(self, batch: int):
        """Input/output device tensors for `batch`, bound to the context (re-bound only when batch changes)."""
        import torch

        context = self._context
        if batch not in self._buffers:
            x = torch.empty((batch, *self.input_dims), dtype=torch.float32, device=self.device)
            context.set_input_shape(self.input_name, tuple(x.shape))
            out_shape = tuple(context.get_tensor_shape(self.output_name))
            y = torch.empty(out_shape, dtype=self._output_dtype, device=self.device)
            host_in = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
            self._buffers[batch] = (x, y, host_in)
            self._bound_batch = None
        x, y, host_in = self._buffers[batch]
        if self._bound_batch != batch:
            context.set_input_shape(self.input_name, tuple(x.shape))
            context.set_tensor_address(self.input_name, x.data_ptr())
            context.set_tensor_address(self.output_name, y.data_ptr())
            self._bound_batch = batch
        return x, y, host_in

    def _enqueue(self, stream_handle: int) -> None:
        if not self._context.execute_async_v3(stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed: {'; '.join(self._logger.errors[-3:])}")

    def _stage(self, batch) -> tuple:
        """Copy `batch` (numpy or torch, any device) into the bound input buffer on the runner's stream."""
        import torch

        shape = tuple(batch.shape)
        x, y, host_in = self._bind(self._check_batch(shape))
        with torch.cuda.stream(self.stream):
            if isinstance(batch, torch.Tensor):
                x.copy_(batch.to(torch.float32), non_blocking=batch.device.type == "cuda")
            else:
                host_in.numpy()[...] = np.asarray(batch, dtype=np.float32)
                x.copy_(host_in, non_blocking=True)
        return x, y

    # -- the Runner interface ---------------------------------------------------------------------------------
    def __call__(self, batch) -> np.ndarray:
        import torch

        _, y = self._stage(batch)
        with torch.cuda.stream(self.stream):
            self._enqueue(self.stream.cuda_stream)
            result = y.float().cpu()  # ordered after the enqueue on this stream
        self.stream.synchronize()
        return result.numpy()

    # -- timing hooks for bench -------------------------------------------------------------------------------
    def compute_step(self, batch) -> Callable[[], float]:
        """A step returning the GPU time (ms, CUDA events) of one execute_async_v3; inputs stay on device."""
        import torch

        self._stage(batch)
        self.stream.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        size = int(batch.shape[0])

        def step() -> float:
            self._bind(size)
            start.record(self.stream)
            self._enqueue(self.stream.cuda_stream)
            end.record(self.stream)
            end.synchronize()
            return start.elapsed_time(end)

        return step

    def end_to_end_step(self, batch) -> Callable[[], None]:
        """A step running host input -> device -> engine -> host output; returns None (wall clock is the
        latency, as for the CPU backends)."""
        def step() -> None:
            self(batch)

        return step

    def cuda_graph_step(self, batch) -> Callable[[], float]:
        """A step replaying a CUDA graph of execute_async_v3 (captured after one normal run, as TensorRT needs);
        returns GPU ms from CUDA events."""
        import torch

        size = int(batch.shape[0])
        self._stage(batch)
        with torch.cuda.stream(self.stream):
            self._enqueue(self.stream.cuda_stream)  # the normal run: lets TensorRT finish shape-dependent setup
        self.stream.synchronize()
        if size not in self._graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue(torch.cuda.current_stream().cuda_stream)
            self._graphs[size] = (graph,)
        graph = self._graphs[size][0]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step() -> float:
            with torch.cuda.stream(self.stream):
                start.record()
                graph.replay()
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return step
