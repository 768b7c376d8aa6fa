"""Pure Python about TensorRT plans: the batch profile, file names, whether a plan fits this TensorRT and GPU,
and the timing cache file. Nothing here imports tensorrt."""

from __future__ import annotations

import contextlib
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

if sys.platform == "win32":  # Windows: no POSIX record locks; builds in one process are still serialised
    fcntl = None
else:
    import fcntl

from ...artifacts import atomic_path
from ...errors import UsageError
from ...manifest import PlanManifest, read_manifest
from . import major_version, version_key

DEFAULT_OUT_DIR = "engines"
HARDWARE_COMPAT = ("ampere+", "same-cc")  # trt.HardwareCompatibilityLevel.AMPERE_PLUS / SAME_COMPUTE_CAPABILITY


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


def write_timing_cache(path: Path, data: bytes | memoryview) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(bytes(data))


_CACHE_THREAD_LOCK = threading.Lock()


@contextlib.contextmanager
def timing_cache_lock(path: Path):
    """Exclusive use of a timing cache file while it is re-read, merged and rewritten: a lock on
    `<cache>.lock`, POSIX lockf as trtexec and Polygraphy take it (so cnnx, trtexec and Polygraphy builds
    sharing a cache exclude each other), plus a thread lock (lockf does not exclude threads of one process).
    The .lock file stays, as theirs do: removing it could let two processes lock different files."""
    lock_file = Path(str(path) + ".lock")
    with _CACHE_THREAD_LOCK, open(lock_file, "a+b") as handle:
        if fcntl is not None:
            fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.lockf(handle, fcntl.LOCK_UN)


def compatibility_problem(manifest: PlanManifest, trt_version: str, compute_capability: str) -> str | None:
    """Why a plan (described by its manifest) cannot be deserialized with this TensorRT on this GPU.

    Plans are tied to the exact TensorRT version and the GPU's compute capability, unless they were built
    version-compatible (then any later TensorRT of the same major version loads them) or with a hardware
    compatibility level (ampere+: any GPU of compute capability 8.0 or newer)."""
    built, flags = manifest.tensorrt, manifest.build_flags
    problems = []
    built_version = str(built.get("version", "?"))
    if flags.get("version_compatible"):
        if (major_version(built_version) != major_version(trt_version)
                or version_key(trt_version) < version_key(built_version)):
            problems.append(f"it is version-compatible from TensorRT {built_version} within major version "
                            f"{major_version(built_version)}, but TensorRT {trt_version} is installed")
    elif built_version != str(trt_version):
        problems.append(f"it was built with TensorRT {built_version}, but TensorRT {trt_version} is installed")
    built_cc = manifest.compute_capability or "?"
    level = flags.get("hardware_compatibility")
    if level == "ampere+":
        if version_key(compute_capability) < (8, 0):
            problems.append(f"it was built for Ampere and newer GPUs (compute capability >= 8.0), but this GPU "
                            f"has compute capability {compute_capability}")
    elif built_cc != str(compute_capability):
        gpu_name = manifest.gpu.get("name") or "another GPU"
        problems.append(f"it was built on {gpu_name} (compute capability {built_cc}), but this GPU has compute "
                        f"capability {compute_capability}")
    return "; ".join(problems) or None


class EngineIncompatible(UsageError):
    """A plan built for another TensorRT version or GPU (exit 2: the artifact does not fit this machine)."""


def check_plan(plan_path: str | Path, trt_version: str, compute_capability: str) -> PlanManifest:
    """The plan's manifest, after refusing a plan that this TensorRT/GPU cannot load."""
    plan_path = Path(plan_path)
    manifest = read_manifest(plan_path, PlanManifest)
    problem = compatibility_problem(manifest, trt_version, compute_capability)
    if problem:
        raise EngineIncompatible(f"refusing '{plan_path}': {problem}",
                                 f"rebuild it on this machine: {manifest.rebuild_command}")
    return manifest


