"""ONNX artifact -> strongly typed TensorRT plan + PlanManifest (`cnnx build`)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...artifacts import atomic_path, prepare_output_dir, sha256_file, tool_versions, utc_now
from ...errors import BackendUnavailable, UsageError
from ...manifest import OnnxManifest, PlanManifest, TensorSpec, manifest_path, read_manifest, write_manifest
from ...naming import plan_filename
from . import major_version, require_tensorrt, require_version, unavailable_reason
from .log import shared_logger
from .plan import (
    DEFAULT_OUT_DIR,
    HARDWARE_COMPAT,
    BatchProfile,
    make_profile,
    read_timing_cache,
    timing_cache_lock,
    timing_cache_path,
    write_timing_cache,
)

Progress = Callable[[str], None]

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
    return shlex.join(parts)  # paths with spaces stay one argument when the line is copied


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


@dataclass(frozen=True)
class OnnxSource:
    path: Path
    model: str
    precision: str | None
    input_name: str
    input_shape: list
    manifest: OnnxManifest | None
    sha256: str

    @property
    def stem(self) -> str:
        """The manifest's artifact stem (with the int8 form), else the file's stem: its plan is named after it."""
        return self.manifest.stem if self.manifest else self.path.stem


def describe_onnx(onnx_path: str | Path) -> OnnxSource:
    """Model, precision and input of an ONNX file: from its cnnx manifest when it has one (checked against the
    file's bytes), else from the file itself with the file stem as the model name."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise UsageError(f"ONNX file '{path}' does not exist", "export one first: cnnx export MODEL")
    manifest = read_manifest(path, OnnxManifest) if manifest_path(path).is_file() else None
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
    model = manifest.model if manifest else path.stem
    precision = manifest.precision if manifest else None
    sha = manifest.artifact_sha256 if manifest else sha256_file(path)
    return OnnxSource(path, model, precision, inputs[0].name, dims, manifest, sha)


def make_progress_monitor(trt, progress: Progress):
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
                 hardware_compatibility: str | None = None, version_compatible: bool = False, reuse: bool = False,
                 progress: Progress = lambda stage: None,
                 warn: Callable[[str], None] | None = None) -> tuple[Path, PlanManifest]:
    """Build a strongly typed TensorRT plan from an ONNX artifact. Returns (plan path, manifest).

    Writes `<out_dir>/<model>-<precision>-b<min>-<max>.plan` and its manifest `<same stem>.json` beside it,
    both atomically; the plan file holds TensorRT's bytes only. Inputs are validated (exit 2) before TensorRT
    availability is checked (exit 3). With `reuse`, a plan already at that path whose manifest matches this
    build (source ONNX hash, profile, flags, TensorRT version, GPU) is returned instead of building again."""
    source = describe_onnx(onnx_path)
    profile_spec = make_profile(source.input_name, source.input_shape, min_batch, opt_batch, max_batch)
    validate_build_options(workspace_mib, optimization_level, hardware_compatibility)
    flags = {"workspace_mib": workspace_mib, "optimization_level": optimization_level, "tf32": tf32,
             "hardware_compatibility": hardware_compatibility, "version_compatible": version_compatible,
             "precision_flags": "none (strongly typed)"}
    options = {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch,
               "workspace_mib": workspace_mib, "optimization_level": optimization_level,
               "timing_cache": timing_cache, "tf32": tf32, "hardware_compatibility": hardware_compatibility,
               "version_compatible": version_compatible, "out_dir": str(out_dir)}
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"cannot build a TensorRT engine here: {reason}",
                                 f"on a machine with an NVIDIA GPU and TensorRT, run: "
                                 f"{build_command(source.path, **options)} (the ONNX file is kept)")
    trt = require_tensorrt()
    if hardware_compatibility == "same-cc":
        require_version(trt, "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "--hardware-compat same-cc")
    from ...hardware import gpu_info

    out = prepare_output_dir(out_dir)
    gpu = gpu_info() or {}
    gpu = {"name": gpu.get("name"), "compute_capability": gpu.get("compute_capability"), "cuda": gpu.get("cuda"),
           "driver": gpu.get("driver")}
    trt_version = str(trt.__version__)
    plan_path = out / plan_filename(source.stem, min_batch, max_batch)
    if reuse:
        existing = reusable_plan(plan_path, source.sha256, profile_spec, flags, trt_version, gpu)
        if existing is not None:
            progress(f"reusing {plan_path} (same ONNX file, profile, flags, TensorRT and GPU)")
            return plan_path, existing
    start = time.perf_counter()

    progress(f"parsing {source.path.name}")
    logger = shared_logger(trt)
    mark = logger.mark()
    with logger.echoing(warn):
        network, parser, builder = _parse(trt, logger, source, trt_version)
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
        monitor = make_progress_monitor(trt, progress)
        if monitor is not None:
            config.progress_monitor = monitor

        cache_file = timing_cache_path(out, trt_version, gpu.get("compute_capability") or "unknown")
        cache_state = attach_timing_cache(config, cache_file) if timing_cache else {"used": False}

        profile = builder.create_optimization_profile()
        lo, opt, hi = profile_spec.shapes()
        profile.set_shape(profile_spec.input_name, lo, opt, hi)
        config.add_optimization_profile(profile)

        progress("building engine (kernel timing can take minutes)")
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            detail = "; ".join(logger.errors_since(mark)[-3:]) or "TensorRT logged no error"
            raise UsageError(f"TensorRT failed to build an engine from '{source.path}': {detail}",
                             "try --workspace with more MiB, or a lower --opt-level; run with --debug for details")
        build_seconds = round(time.perf_counter() - start, 2)

        with atomic_path(plan_path) as tmp:
            with open(tmp, "wb") as f:
                f.write(memoryview(plan))
        if cache_state["used"] and not save_timing_cache(config, cache_file):
            cache_state["saved"] = False

    manifest = PlanManifest(
        artifact=plan_path.name, artifact_sha256=sha256_file(plan_path), artifact_bytes=plan_path.stat().st_size,
        model=source.model, precision=source.precision,
        source={"onnx": str(source.path), "onnx_sha256": source.sha256,
                "onnx_manifest": str(manifest_path(source.path)) if source.manifest else None},
        input=TensorSpec(profile_spec.input_name, ("batch", *profile_spec.dims)),
        output=source.manifest.output if source.manifest else None,
        preprocess=source.manifest.preprocess if source.manifest else None,
        q_dq_form=source.manifest.q_dq_form if source.manifest else None,
        profile=profile_spec.to_dict(),
        tensorrt={"version": trt_version, "strongly_typed": True},
        gpu=gpu, build_flags=flags,
        timing_cache={**cache_state, "path": str(cache_file) if timing_cache else None},
        build_seconds=build_seconds, rebuild_command=build_command(source.path, **options),
        tools=tool_versions(), created=utc_now(), labels=source.manifest.labels if source.manifest else None)
    write_manifest(plan_path, manifest)
    return plan_path, manifest


def _parse(trt, logger, source: OnnxSource, trt_version: str):
    """(network, parser, builder) for the ONNX file; a parser failure lists TensorRT's errors node by node."""
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None and major_version(trt_version) < 11:  # opt-in on 10.x; always on (deprecated) in 11
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UsageError(f"TensorRT's ONNX parser rejected '{source.path}' ({len(errors)} error(s)):\n"
                         + format_parser_errors(errors),
                         "the named node uses an operator or data type this TensorRT cannot parse; "
                         "re-export with another opset, or check the Q/DQ recipe for int8")
    return network, parser, builder  # the parser must outlive the build (it owns the parsed weights)


def reusable_plan(plan_path: Path, onnx_sha256: str, profile_spec: BatchProfile, flags: dict, trt_version: str,
                  gpu: dict) -> PlanManifest | None:
    """The manifest of the plan at `plan_path` when that plan is exactly what this build would make: from the
    same ONNX bytes, with the same profile and build flags, by this TensorRT on a GPU of the same name and
    compute capability (kernels are chosen by timing on that GPU). None otherwise, or when the plan no longer
    matches its manifest."""
    if not plan_path.is_file() or not manifest_path(plan_path).is_file():
        return None
    try:
        manifest = read_manifest(plan_path, PlanManifest)
    except UsageError:  # damaged, another format, or bytes that no longer match: build again
        return None
    same = (manifest.source.get("onnx_sha256") == onnx_sha256 and manifest.profile == profile_spec.to_dict()
            and manifest.build_flags == flags and str(manifest.tensorrt.get("version")) == trt_version
            and (manifest.gpu.get("name"), manifest.gpu.get("compute_capability"))
            == (gpu.get("name"), gpu.get("compute_capability")))
    return manifest if same else None


def attach_timing_cache(config, path: Path) -> dict:
    """Give the build the timing cache stored at `path` (or a new one when there is none, or TensorRT rejects
    the stored one: written by another TensorRT or GPU). create_timing_cache may return None (NVIDIA's own
    tools check for it): then the build goes on without a cache and the manifest says why."""
    previous = read_timing_cache(path)
    for data in ((previous, b"") if previous else (b"",)):
        cache = config.create_timing_cache(data)
        if cache is not None and config.set_timing_cache(cache, False):
            return {"used": True, "reused": bool(data)}
    return {"used": False, "reused": False, "reason": "TensorRT could not create a timing cache"}


def save_timing_cache(config, path: Path) -> bool:
    """Merge the build's timing cache into the file, under the cache lock: re-read what is on disk now (other
    builds may have added entries since this one started), combine it into ours (entries of this build win a
    conflict; a cache of another TensorRT/GPU is skipped by TensorRT), and replace the file atomically. This is
    Polygraphy's order; trtexec merges the other way round. False when TensorRT gave no cache to save."""
    built = config.get_timing_cache()
    if built is None:
        return False
    with timing_cache_lock(path):
        on_disk = read_timing_cache(path)
        if on_disk:
            stored = config.create_timing_cache(on_disk)
            if stored is not None:
                built.combine(stored, False)
        write_timing_cache(path, memoryview(built.serialize()))
    return True


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
