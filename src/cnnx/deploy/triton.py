"""Triton Inference Server model repository: one model folder per artifact.

    REPO/<name>/config.pbtxt          platform, batching, dims, instance group, warm-up (validated against
                                      Triton's ModelConfig protobuf schema before anything is written)
    REPO/<name>/labels.txt            class names (export --labels, else ImageNet's) for Triton's classification
    REPO/<name>/1/model.onnx|.plan    the artifact, byte for byte
    REPO/<name>/1/model.json          its manifest, unchanged: `cnnx.load(REPO/<name>/1/model.onnx)` still
                                      verifies the copy against it
    REPO/<name>/1/model.py            only for the python kind (--python): triton_python_model.py, which runs
                                      the artifact with cnnx.load and also takes encoded image files

Each model folder is built in a hidden temporary folder beside REPO (see staging_folder) and renamed into
place, so a failure leaves either the previous folder or nothing, never a half-written model that Triton would
try to load.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..artifacts import exchange_paths, exclusive_lock, is_write_failure, sha256_file, write_error
from ..backends import BACKENDS
from ..errors import BackendUnavailable, UsageError
from ..manifest import (
    Manifest,
    OnnxManifest,
    PlanManifest,
    TensorSpec,
    class_names,
    manifest_kind,
    manifest_path,
    read_manifest,
    refuse_manifest_as_artifact,
)
from . import triton_python_model

INSTALL_HINT = "pip install 'cnnx[triton]'"
DEFAULT_MAX_BATCH = 32
DEFAULT_QUEUE_DELAY_US = 100
DEFAULT_TOPK = 5
ONNX_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.runs == "onnx" and b.triton)
# what cnnx.load runs inside the python kind's model.py: the CPU runtimes of ONNX artifacts
PYTHON_RUNTIMES = tuple(name for name, b in BACKENDS.items() if b.runs == "onnx" and b.device == "cpu")
KINDS = ("auto", "cpu", "gpu")
WARMUP_DATA = ("random", "zero", "none")
VERSION = "1"
LABELS_NAME = "labels.txt"
PYTHON_MODEL_SOURCE = Path(triton_python_model.__file__)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class TritonOptions:
    backend: str = "onnxruntime"  # ONNX artifacts: Triton's onnxruntime or openvino backend, or with
    #                               python=True the runtime that cnnx.load uses inside model.py
    python: bool = False  # the python kind: model.py runs cnnx.load and also takes encoded image files
    topk: int = DEFAULT_TOPK  # python kind: labels and probabilities per image
    max_batch: int | None = None  # ONNX: DEFAULT_MAX_BATCH (openvino: 0, no Triton batching); plan: profile max
    instances: int = 1
    kind: str = "auto"  # auto: KIND_GPU for plans, KIND_CPU for ONNX
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    preferred_batch: tuple[int, ...] | None = None  # None: not emitted (Triton's guide: most models should not)
    warmup: str = "random"


@dataclass(frozen=True)
class ConfigTensor:
    """One input or output of config.pbtxt."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False
    label_filename: str | None = None


@dataclass
class ModelPlan:
    """Everything about one model folder, decided and validated before anything is written."""

    artifact: Path
    manifest: Manifest
    name: str
    platform: str  # tensorrt_plan, onnxruntime_onnx, openvino or python: what serves the model
    max_batch: int  # 0: Triton does not batch (the batch is part of the dims)
    warmup_batches: tuple[int, ...]
    inputs: tuple[ConfigTensor, ...]
    outputs: tuple[ConfigTensor, ...]
    parameters: dict[str, str]
    file_name: str  # model.onnx / model.plan
    labels: bool
    config_text: str = ""


@dataclass
class TritonModel:
    name: str
    path: Path
    artifact: Path
    config: Path
    max_batch: int
    platform: str
    perf_command: str | None  # None for the python kind: perf_analyzer would fill both of its inputs
    replaced: bool = False
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "path": str(self.path), "artifact": str(self.artifact),
                "config": str(self.config), "max_batch": self.max_batch, "platform": self.platform,
                "replaced": self.replaced, "files": self.files, "perf_analyzer": self.perf_command}


def model_config_schema():
    """Triton's ModelConfig protobuf message class and protobuf's text_format (from tritonclient)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise BackendUnavailable("Triton's model configuration schema is not installed (it ships with "
                                 "the tritonclient package), so cnnx cannot validate config.pbtxt",
                                 INSTALL_HINT) from None
    return model_config_pb2.ModelConfig, text_format


def parse_config(text: str):
    """Parse config.pbtxt text into Triton's ModelConfig message; an invalid config is an error."""
    message_class, text_format = model_config_schema()
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as exc:
        raise UsageError(f"config.pbtxt does not parse as Triton's ModelConfig: {exc}") from None


def check_model_name(name: str) -> str:
    """A model folder name that stays inside the repository: one plain path component."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"invalid Triton model name {name!r}: it must be one folder name inside the "
                         "repository (letters, digits, '.', '_', '-'; not starting with '.' or '-'; no '/', "
                         "'..' or absolute paths)", "pass a plain name with --name, e.g. --name resnet50-fp16")
    return name


def _recorded(tensor: TensorSpec | None, key: str) -> TensorSpec:
    """The manifest's input or output; a plan built from an ONNX file without a cnnx manifest has no output."""
    if tensor is None:
        raise UsageError(f"the manifest records no '{key}' tensor", "rebuild the artifact with this version of cnnx")
    return tensor


def _dims(tensor: TensorSpec | None, key: str) -> tuple[int, ...]:
    tensor = _recorded(tensor, key)
    if isinstance(tensor.shape[0], int) and not isinstance(tensor.shape[0], bool):
        raise UsageError(f"the artifact's {key} has a fixed batch of {tensor.shape[0]}; Triton batching needs a "
                         "dynamic batch dimension", "re-export it with `cnnx export` (dynamic batch)")
    return tensor.dims


def _data_type(tensor: TensorSpec) -> str:
    if tensor.dtype not in _TRITON_TYPES:
        raise UsageError(f"the artifact's {tensor.name} type {tensor.dtype} has no Triton mapping here")
    return _TRITON_TYPES[tensor.dtype]


def _list(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _tensor_lines(tensors: tuple[ConfigTensor, ...]) -> list[str]:
    lines = []
    for i, t in enumerate(tensors):
        lines += ["  {", f'    name: "{t.name}"', f"    data_type: {t.data_type}", f"    dims: {_list(t.dims)}"]
        if t.optional:
            lines.append("    optional: true")
        if t.label_filename:
            lines.append(f'    label_filename: "{t.label_filename}"')
        lines.append("  }" + ("," if i < len(tensors) - 1 else ""))
    return lines


def _header(plan: ModelPlan) -> list[str]:
    """Comments that tell the reader what the config cannot: where it came from, what clients send."""
    m = plan.manifest
    lines = [f"# Written by cnnx {__version__} from {plan.artifact.name} (model {m.model}, {m.precision}, "
             f"sha256 {m.artifact_sha256[:16]}...)."]
    pre = m.preprocess
    if pre is not None:
        lines += [f"# Clients send NCHW float32 images preprocessed as in 1/model.json: resize the shorter side to "
                  f"{pre.resize} ({pre.interpolation}),",
                  f"# center-crop {pre.crop}, scale to [0, 1], subtract mean {list(pre.mean)}, "
                  f"divide by std {list(pre.std)}."]
    if plan.platform == "python":
        assert isinstance(m, OnnxManifest)  # the python kind serves ONNX artifacts only (_check_options)
        lines += [f"# Or encoded image files (JPEG, PNG, ...) as {triton_python_model.BYTES_INPUT}: "
                  "1/model.py preprocesses them the same way.",
                  f"# Outputs: {m.output.name}, and the top {plan.parameters['topk']} "
                  f"{triton_python_model.LABELS_OUTPUT} with their {triton_python_model.PROBABILITIES_OUTPUT}."]
    if plan.platform == "openvino":
        lines.append("# OpenVINO's backend compiles a fixed batch of max_batch_size: smaller batches are padded to "
                     "it (ENABLE_BATCH_PADDING), at the cost of a full batch." if plan.max_batch else
                     "# max_batch_size 0: OpenVINO runs each request at its own batch (the first dim); Triton "
                     "does not batch requests.")
    if plan.platform == "tensorrt_plan":
        assert isinstance(m, PlanManifest)  # only plans are served by tensorrt_plan (_platform)
        flags = m.build_flags
        version = m.tensorrt.get("version", "?")
        lines.append(f"# Built with TensorRT {version}: "
                     + ("version-compatible, so start tritonserver with "
                        "--backend-config=tensorrt,version-compatible=true;" if flags.get("version_compatible")
                        else "the server's TensorRT must be exactly this version;")
                     + f" batches from {m.min_batch} to {m.max_batch} (the profile).")
    return lines


def render_config(plan: ModelPlan, opts: TritonOptions) -> str:
    """config.pbtxt text (protobuf text format) for one planned model."""
    lines = _header(plan) + [f'name: "{plan.name}"']
    if plan.platform == "tensorrt_plan":
        # Triton picks this file on GPUs of exactly this compute capability, and model.plan (the default
        # name, i.e. the same file) on any other: the mapping records the GPU, it restricts nothing.
        assert isinstance(plan.manifest, PlanManifest)  # only plans are served by tensorrt_plan (_platform)
        lines += ['platform: "tensorrt_plan"',
                  f'cc_model_filenames {{ key: "{plan.manifest.compute_capability}" value: "model.plan" }}']
    elif plan.platform == "onnxruntime_onnx":
        lines.append('platform: "onnxruntime_onnx"')
    else:
        lines.append(f'backend: "{plan.platform}"')
        if plan.platform == "openvino":
            lines.append('default_model_filename: "model.onnx"')
    lines.append(f"max_batch_size: {plan.max_batch}")
    lines += ["input ["] + _tensor_lines(plan.inputs) + ["]", "output ["] + _tensor_lines(plan.outputs) + ["]"]
    if plan.max_batch > 1:
        lines.append("dynamic_batching {")
        if opts.preferred_batch:
            lines.append(f"  preferred_batch_size: {_list(opts.preferred_batch)}")
        lines += [f"  max_queue_delay_microseconds: {opts.queue_delay_us}", "}"]
    kind = {"auto": "KIND_GPU" if plan.platform == "tensorrt_plan" else "KIND_CPU", "cpu": "KIND_CPU",
            "gpu": "KIND_GPU"}[opts.kind]
    lines += ["instance_group [", "  {", f"    count: {opts.instances}", f"    kind: {kind}", "  }", "]"]
    for key, value in plan.parameters.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    if plan.warmup_batches:
        lines.append("model_warmup [")
        inp = plan.inputs[0]
        for i, batch in enumerate(plan.warmup_batches):
            # without Triton batching the batch is the first of the dims: warm up one request of that batch
            requests, dims = (1, (batch, *inp.dims[1:])) if plan.max_batch == 0 else (batch, inp.dims)
            lines += ["  {", f'    name: "{opts.warmup}-batch{batch}"', f"    batch_size: {requests}", "    inputs {",
                      f'      key: "{inp.name}"', "      value {", f"        data_type: {inp.data_type}",
                      f"        dims: {_list(dims)}", f"        {opts.warmup}_data: true", "      }", "    }",
                      "  }" + ("," if i < len(plan.warmup_batches) - 1 else "")]
        lines.append("]")
    return "\n".join(lines) + "\n"


def validate_config(text: str, plan: ModelPlan):
    """Parse `text` with Triton's ModelConfig schema and check it against the plan and the artifact's manifest."""
    config = parse_config(text)
    problems = []
    if config.name != plan.name:
        problems.append(f"name {config.name!r} != {plan.name!r}")
    served_by = config.platform if config.platform in ("tensorrt_plan", "onnxruntime_onnx") else config.backend
    if served_by != plan.platform:
        problems.append(f"served by {served_by!r} instead of {plan.platform!r}")
    if config.max_batch_size != plan.max_batch:
        problems.append(f"max_batch_size {config.max_batch_size} != {plan.max_batch}")
    batch_dims = () if plan.max_batch else (-1,)
    for key, tensors, spec in (("input", config.input, plan.manifest.input),
                               ("output", config.output, _recorded(plan.manifest.output, "output"))):
        if not tensors or tensors[0].name != spec.name:
            problems.append(f"the first {key} is not the artifact's {spec.name!r}")
        elif tuple(tensors[0].dims) != batch_dims + _dims(spec, key):
            problems.append(f"{key} dims {list(tensors[0].dims)} != {list(batch_dims + _dims(spec, key))}")
    for key, tensors, planned in (("input", config.input, plan.inputs), ("output", config.output, plan.outputs)):
        if [t.name for t in tensors] != [t.name for t in planned]:
            problems.append(f"{key}s {[t.name for t in tensors]} != {[t.name for t in planned]}")
    if any(size > plan.max_batch for size in config.dynamic_batching.preferred_batch_size):
        problems.append("a preferred batch size exceeds max_batch_size")
    if plan.max_batch and any(w.batch_size > plan.max_batch for w in config.model_warmup):
        problems.append("a warm-up batch exceeds max_batch_size")
    if plan.platform == "tensorrt_plan":
        assert isinstance(plan.manifest, PlanManifest)  # only plans are served by tensorrt_plan (_platform)
        if any(w.batch_size < plan.manifest.min_batch for w in config.model_warmup):
            problems.append(f"a warm-up batch is below the plan's profile minimum {plan.manifest.min_batch}")
        if dict(config.cc_model_filenames) != {plan.manifest.compute_capability: "model.plan"}:
            problems.append(f"cc_model_filenames {dict(config.cc_model_filenames)} does not name model.plan")
    if {k: v.string_value for k, v in config.parameters.items()} != plan.parameters:
        problems.append(f"parameters {dict(config.parameters)} != {plan.parameters}")
    if problems:
        raise UsageError(f"the generated config.pbtxt for {plan.name} is inconsistent with its artifact: "
                         + "; ".join(problems), "this is a bug in cnnx: please report it")
    return config


def _check_options(opts: TritonOptions, is_plan: bool) -> None:
    if opts.backend not in (PYTHON_RUNTIMES if opts.python else ONNX_BACKENDS):
        raise UsageError(f"unknown {'runtime for --python' if opts.python else 'Triton backend'} '{opts.backend}'",
                         f"choose one of {', '.join(PYTHON_RUNTIMES if opts.python else ONNX_BACKENDS)}")
    if opts.kind not in KINDS:
        raise UsageError(f"unknown instance kind '{opts.kind}'", f"choose one of {', '.join(KINDS)}")
    if opts.warmup not in WARMUP_DATA:
        raise UsageError(f"unknown warm-up data '{opts.warmup}'", f"choose one of {', '.join(WARMUP_DATA)}")
    if opts.instances < 1:
        raise UsageError("--instances must be at least 1")
    if opts.queue_delay_us < 0:
        raise UsageError("--queue-delay-us must not be negative")
    if opts.max_batch is not None and opts.max_batch < 1:
        raise UsageError("--max-batch must be at least 1")
    if opts.preferred_batch and any(size < 1 for size in opts.preferred_batch):
        raise UsageError("preferred batch sizes must be positive")
    if opts.topk < 1:
        raise UsageError("--topk must be at least 1")
    if is_plan and opts.python:
        raise UsageError("the python kind serves ONNX artifacts (on ONNX Runtime or OpenVINO), not TensorRT plans",
                         "pass the ONNX artifact with --python, or serve the plan without --python")
    if is_plan and opts.kind == "cpu":
        raise UsageError("a TensorRT plan runs only on a GPU: --kind cpu is impossible for it")
    if not is_plan and opts.kind == "gpu" and _platform(opts, is_plan) in ("python", "openvino"):
        what = "the python kind runs ONNX Runtime or OpenVINO" if opts.python else "Triton's OpenVINO backend runs"
        raise UsageError(f"{what} on CPU only", "use --kind cpu (or auto)")


def _platform(opts: TritonOptions, is_plan: bool) -> str:
    """What serves the model: a Triton platform (tensorrt_plan, onnxruntime_onnx) or backend (openvino, python)."""
    if is_plan:
        return "tensorrt_plan"
    if opts.python:
        return "python"
    served_by = BACKENDS[opts.backend].triton
    assert served_by is not None  # _check_options admits only ONNX_BACKENDS, each of which Triton serves
    return served_by


def _max_batch(manifest: Manifest, artifact: Path, platform: str, opts: TritonOptions) -> int:
    if platform == "tensorrt_plan":
        assert isinstance(manifest, PlanManifest)  # only plans are served by tensorrt_plan (_platform)
        low, high = manifest.min_batch, manifest.max_batch
        if opts.max_batch is not None and not low <= opts.max_batch <= high:
            raise UsageError(f"--max-batch {opts.max_batch} is outside the plan's profile batches {low} to {high}",
                             f"use --max-batch between {low} and {high}, or rebuild the plan with another profile")
        if manifest.compute_capability is None:
            raise UsageError(f"the manifest of '{artifact}' records no GPU compute capability",
                             "rebuild the plan with this version of cnnx")
        return opts.max_batch or high
    if platform == "openvino":
        # OpenVINO's backend compiles a fixed batch of max_batch_size and rejects every other batch unless it
        # pads (openvino_backend src/openvino.cc): batch requests only when asked for, then with padding
        return opts.max_batch or 0
    return opts.max_batch or DEFAULT_MAX_BATCH


def _warmup_batches(manifest: Manifest, platform: str, max_batch: int, opts: TritonOptions) -> tuple[int, ...]:
    """Batch sizes Triton runs through the model at load. A TensorRT plan refuses batches outside its profile,
    and a failed warm-up fails the load: warm up from the profile's minimum."""
    if opts.warmup == "none":
        return ()
    low = 1
    if platform == "tensorrt_plan":
        assert isinstance(manifest, PlanManifest)  # only plans are served by tensorrt_plan (_platform)
        low = manifest.min_batch
    return tuple(dict.fromkeys((low, max(max_batch, low))))


def plan_model(artifact: str | Path, name: str | None = None, opts: TritonOptions = TritonOptions()) -> ModelPlan:
    """Read and check the artifact, decide the model folder's contents and validate its config."""
    artifact = Path(artifact)
    refuse_manifest_as_artifact(artifact)
    suffix = artifact.suffix.lower()
    kind = manifest_kind(artifact)
    is_plan = kind is PlanManifest
    manifest = read_manifest(artifact, kind)  # refuses a modified file
    _check_options(opts, is_plan)
    name = check_model_name(name if name is not None else manifest.stem)
    platform = _platform(opts, is_plan)
    max_batch = _max_batch(manifest, artifact, platform, opts)
    if opts.preferred_batch and (max_batch < 2 or max(opts.preferred_batch) > max_batch):
        raise UsageError(f"a preferred batch size exceeds the max batch {max_batch}",
                         "choose sizes up to --max-batch" + (" (and set --max-batch)" if not max_batch else ""))
    inp, out = manifest.input, _recorded(manifest.output, "output")
    batch_dims = () if max_batch else (-1,)
    labels = class_names(manifest) is not None
    inputs = [ConfigTensor(inp.name, _data_type(inp), batch_dims + _dims(inp, "input"), optional=opts.python)]
    outputs = [ConfigTensor(out.name, _data_type(out), batch_dims + _dims(out, "output"),
                            label_filename=LABELS_NAME if labels else None)]
    parameters = {}
    if platform == "openvino" and max_batch:
        parameters["ENABLE_BATCH_PADDING"] = "YES"
    if platform == "python":
        topk = min(opts.topk, _dims(out, "output")[-1])
        inputs.append(ConfigTensor(triton_python_model.BYTES_INPUT, "TYPE_STRING", (1,), optional=True))
        outputs += [ConfigTensor(triton_python_model.LABELS_OUTPUT, "TYPE_STRING", (topk,)),
                    ConfigTensor(triton_python_model.PROBABILITIES_OUTPUT, "TYPE_FP32", (topk,))]
        parameters.update(artifact=f"model{suffix}", runtime=opts.backend, topk=str(topk))
    if len({t.name for t in inputs + outputs}) < len(inputs) + len(outputs):
        raise UsageError(f"the artifact's tensor names {inp.name!r} / {out.name!r} clash with the python kind's "
                         "own inputs and outputs", "serve it without --python")
    plan = ModelPlan(artifact=artifact, manifest=manifest, name=name, platform=platform, max_batch=max_batch,
                     warmup_batches=_warmup_batches(manifest, platform, max_batch, opts), inputs=tuple(inputs),
                     outputs=tuple(outputs), parameters=parameters, file_name=f"model{suffix}", labels=labels)
    plan.config_text = render_config(plan, opts)
    validate_config(plan.config_text, plan)
    return plan


def _fill_model_folder(folder: Path, plan: ModelPlan) -> None:
    folder.chmod(0o755)  # mkdtemp makes 0700; the server (often another user in a container) must read it
    version = folder / VERSION
    version.mkdir()
    shutil.copyfile(plan.artifact, version / plan.file_name)
    if sha256_file(version / plan.file_name) != plan.manifest.artifact_sha256:
        raise UsageError(f"the copy of '{plan.artifact}' differs from the original (changed while copying?)",
                         "run the command again")
    shutil.copyfile(manifest_path(plan.artifact), version / "model.json")
    if plan.platform == "python":
        shutil.copyfile(PYTHON_MODEL_SOURCE, version / "model.py")
    if plan.labels:
        names = class_names(plan.manifest)
        assert names is not None  # plan.labels: the manifest names its classes (plan_model)
        (folder / LABELS_NAME).write_text("\n".join(names) + "\n", encoding="utf-8")
    (folder / "config.pbtxt").write_text(plan.config_text, encoding="utf-8")


def _replace_folder(new: Path, final: Path) -> None:
    """Put the complete folder `new` in the place of the existing `final`. Where the OS swaps two paths in
    one step (Linux), `final` never goes missing, so a server polling the repository never sees the model
    vanish; elsewhere it is two renames with a moment in between. `new` then holds the old folder."""
    if exchange_paths(new, final):
        return
    aside = Path(tempfile.mkdtemp(dir=new.parent, prefix=f"{new.name}.", suffix=".old"))  # off the repository
    os.replace(final, aside / final.name)
    try:
        os.rename(new, final)
    except BaseException:
        os.replace(aside / final.name, final)  # put the previous model back
        shutil.rmtree(aside, ignore_errors=True)
        raise
    os.replace(aside / final.name, new)
    shutil.rmtree(aside, ignore_errors=True)


def _bytes_needed(plan: ModelPlan) -> int:
    """What one model folder takes: the artifact and its manifest (config and labels are a few KiB)."""
    return plan.artifact.stat().st_size + manifest_path(plan.artifact).stat().st_size


def staging_folder(repo: Path) -> Path:
    """Where model folders are assembled before one rename puts them into `repo`. Triton takes every subfolder
    of a repository for a model, hidden ones included: a half-written one logs "Poll failed for model directory"
    and stops a server started with the default --exit-on-error. So they are assembled beside the repository,
    unless that is another file system (a repository is often a mount point) or not writable: then inside it."""
    repo = repo.absolute()
    parent = repo.parent
    if parent != repo and os.access(parent, os.W_OK) and parent.stat().st_dev == repo.stat().st_dev:
        return parent
    return repo


def _staging_prefix(repo: Path) -> str:
    return f".{repo.absolute().name}.cnnx-triton."


@contextlib.contextmanager
def repository_lock(repo: Path):
    """One `cnnx triton` at a time per repository, removing the folders a killed run left in the staging folder;
    yields that folder. The lock is a file, which Triton ignores."""
    staging, prefix = staging_folder(repo), _staging_prefix(repo)
    with exclusive_lock(staging / f"{prefix}lock", glob.escape(str(staging / prefix)) + "*.partial", "--repo"):
        yield staging


def write_model(repo: Path, plan: ModelPlan, force: bool, staging: Path) -> TritonModel:
    """Write one model folder atomically: assembled in `staging` (held by repository_lock), then renamed or
    swapped into `repo`."""
    final = repo / plan.name
    exists = final.exists() or final.is_symlink()
    if exists and not force:
        raise UsageError(f"model folder '{final}' already exists", "pass --force to replace it, or --name")
    tmp = None
    try:
        prefix = f"{_staging_prefix(repo)}{plan.name}."
        tmp = Path(tempfile.mkdtemp(dir=staging, prefix=prefix, suffix=".partial"))
        _fill_model_folder(tmp, plan)
        if exists:
            _replace_folder(tmp, final)
        else:
            os.rename(tmp, final)
    except OSError as exc:
        if is_write_failure(exc):
            raise write_error(final, exc, _bytes_needed(plan), option="--repo") from None
        raise
    finally:  # the failed folder, or the replaced one (which may have been a symlink)
        if tmp is not None and tmp.is_symlink():
            tmp.unlink()
        elif tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    perf = None if plan.platform == "python" else shlex.join(
        ["perf_analyzer", "-m", plan.name, "-b", "1", "--concurrency-range", "1:4"])
    return TritonModel(name=plan.name, path=final, artifact=plan.artifact, config=final / "config.pbtxt",
                       max_batch=plan.max_batch, platform=plan.platform, replaced=exists, files=files,
                       perf_command=perf)


def add_to_repository(artifacts, repo: str | Path, *, name: str | None = None,
                      opts: TritonOptions = TritonOptions(), force: bool = False) -> list[TritonModel]:
    """Add each artifact to the Triton model repository `repo` (created if missing) as its own model.
    Every artifact is checked and every config validated before the first folder is written."""
    artifacts = [Path(a) for a in artifacts]
    if not artifacts:
        raise UsageError("no artifact given", "pass one or more .onnx / .plan files")
    if name is not None and len(artifacts) > 1:
        raise UsageError("--name applies to one artifact, but several were given",
                         "run the command once per artifact to name each")
    model_config_schema()  # fail early (exit 3) without tritonclient
    plans = [plan_model(a, name, opts) for a in artifacts]
    names = [p.name for p in plans]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"several artifacts map to the model name {', '.join(duplicates)}",
                         "add them one at a time with distinct --name values")
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--repo '{repo}' exists and is not a folder")
    try:
        repo.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the repository folder '{repo}' ({exc.strerror or exc})") from None
    if not force:
        existing = [str(repo / p.name) for p in plans if (repo / p.name).exists()]
        if existing:
            raise UsageError(f"model folder {', '.join(existing)} already exists",
                             "pass --force to replace it, or choose another --name")
    needed = sum(_bytes_needed(p) for p in plans)
    if shutil.disk_usage(repo).free < needed:  # refuse before the first folder rather than halfway through
        what = repo / (plans[0].name if len(plans) == 1 else f"{len(plans)} model folders")
        raise write_error(what, OSError(errno.ENOSPC, "No space left on device"), needed, option="--repo")
    with repository_lock(repo) as staging:
        return [write_model(repo, plan, force, staging) for plan in plans]
