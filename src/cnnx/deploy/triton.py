"""Triton Inference Server model repository: one model folder per artifact.

    REPO/<name>/config.pbtxt          platform, batching, dims, instance group, warm-up (validated against
                                      Triton's ModelConfig protobuf schema before anything is written)
    REPO/<name>/labels.txt            class names (export --labels, else ImageNet's) for Triton's classification
    REPO/<name>/1/model.onnx|.plan    the artifact, byte for byte
    REPO/<name>/1/model.json          its manifest, unchanged: `cnnx.load(REPO/<name>/1/model.onnx)` still
                                      verifies the copy against it

Each model folder is built in a hidden temporary folder inside REPO and renamed into place, so a failure
leaves either the previous folder or nothing, never a half-written model that Triton would try to load.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..artifacts import sha256_file
from ..backends import BACKENDS
from ..errors import BackendUnavailable, UsageError
from ..manifest import (Manifest, OnnxManifest, PlanManifest, TensorSpec, class_names, manifest_path,
                        read_manifest, refuse_manifest_as_artifact)

INSTALL_HINT = "pip install 'cnnx[triton]'"
DEFAULT_MAX_BATCH = 32
DEFAULT_QUEUE_DELAY_US = 100
ONNX_BACKENDS = tuple(name for name, b in BACKENDS.items() if b.runs == "onnx" and b.triton)
KINDS = ("auto", "cpu", "gpu")
WARMUP_DATA = ("random", "zero", "none")
VERSION = "1"
LABELS_NAME = "labels.txt"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}


@dataclass(frozen=True)
class TritonOptions:
    backend: str = "onnxruntime"  # for ONNX artifacts: Triton's onnxruntime or openvino backend
    max_batch: int | None = None  # ONNX: DEFAULT_MAX_BATCH; plan: its profile's maximum
    instances: int = 1
    kind: str = "auto"  # auto: KIND_GPU for plans, KIND_CPU for ONNX
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    preferred_batch: tuple[int, ...] | None = None  # None: powers of two up to max_batch
    warmup: str = "random"


@dataclass
class ModelPlan:
    """Everything about one model folder, decided and validated before anything is written."""

    artifact: Path
    manifest: Manifest
    name: str
    max_batch: int
    config_text: str
    file_name: str  # model.onnx / model.plan
    labels: bool


@dataclass
class TritonModel:
    name: str
    path: Path
    artifact: Path
    config: Path
    max_batch: int
    platform: str
    perf_command: str
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


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 2 up to max_batch, plus max_batch itself."""
    sizes, size = [], 2
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch] if max_batch > 1 else []


def _dims(tensor: TensorSpec | None, key: str) -> list[int]:
    if tensor is None:
        raise UsageError(f"the manifest records no '{key}' tensor", "rebuild the artifact with this version of cnnx")
    if isinstance(tensor.shape[0], int) and not isinstance(tensor.shape[0], bool):
        raise UsageError(f"the artifact's {key} has a fixed batch of {tensor.shape[0]}; Triton batching needs a "
                         "dynamic batch dimension", "re-export it with `cnnx export` (dynamic batch)")
    return list(tensor.dims)


def _data_type(tensor: TensorSpec) -> str:
    if tensor.dtype not in _TRITON_TYPES:
        raise UsageError(f"the artifact's {tensor.name} type {tensor.dtype} has no Triton mapping here")
    return _TRITON_TYPES[tensor.dtype]


def _list(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def render_config(manifest: Manifest, artifact_name: str, name: str, max_batch: int, opts: TritonOptions,
                  is_plan: bool, labels: bool) -> str:
    """config.pbtxt text (protobuf text format) for one artifact."""
    inp, out = manifest.input, manifest.output
    in_dims, out_dims = _dims(inp, "input"), _dims(out, "output")
    lines = [
        f"# Written by cnnx {__version__} from {artifact_name} (model {manifest.model}, "
        f"{manifest.precision}, sha256 {manifest.artifact_sha256[:16]}...).",
    ]
    pre = manifest.preprocess
    if pre is not None:
        lines += [
            f"# Clients send NCHW float32 images preprocessed as in 1/model.json: resize the shorter side to "
            f"{pre.resize} ({pre.interpolation}),",
            f"# center-crop {pre.crop}, scale to [0, 1], subtract mean {list(pre.mean)}, "
            f"divide by std {list(pre.std)}.",
        ]
    lines.append(f'name: "{name}"')
    if is_plan:
        lines.append('platform: "tensorrt_plan"')
        capability = manifest.compute_capability
        # A plan runs only on GPUs of the compute capability it was built for; Triton picks the file by it.
        lines.append(f'cc_model_filenames {{ key: "{capability}" value: "model.plan" }}')
    elif opts.backend == "openvino":
        lines += ['backend: "openvino"', 'default_model_filename: "model.onnx"']
    else:
        lines.append('platform: "onnxruntime_onnx"')
    lines.append(f"max_batch_size: {max_batch}")
    output_extra = f'\n    label_filename: "{LABELS_NAME}"' if labels else ""
    lines += [
        "input [",
        "  {",
        f'    name: "{inp.name}"',
        f"    data_type: {_data_type(inp)}",
        f"    dims: {_list(in_dims)}",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{out.name}"',
        f"    data_type: {_data_type(out)}",
        f"    dims: {_list(out_dims)}{output_extra}",
        "  }",
        "]",
    ]
    if max_batch > 1:
        preferred = list(opts.preferred_batch) if opts.preferred_batch else preferred_batch_sizes(max_batch)
        lines += ["dynamic_batching {"]
        if preferred:
            lines.append(f"  preferred_batch_size: {_list(preferred)}")
        lines += [f"  max_queue_delay_microseconds: {opts.queue_delay_us}", "}"]
    kind = {"auto": "KIND_GPU" if is_plan else "KIND_CPU", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}[opts.kind]
    lines += ["instance_group [", "  {", f"    count: {opts.instances}", f"    kind: {kind}", "  }", "]"]
    if opts.warmup != "none":
        lines.append("model_warmup [")
        batches = [1] if max_batch == 1 else [1, max_batch]
        for i, batch in enumerate(batches):
            lines += [
                "  {",
                f'    name: "{opts.warmup}-batch{batch}"',
                f"    batch_size: {batch}",
                "    inputs {",
                f'      key: "{inp.name}"',
                "      value {",
                f"        data_type: {_data_type(inp)}",
                f"        dims: {_list(in_dims)}",
                f"        {opts.warmup}_data: true",
                "      }",
                "    }",
                "  }" + ("," if i < len(batches) - 1 else ""),
            ]
        lines.append("]")
    return "\n".join(lines) + "\n"


def validate_config(text: str, manifest: Manifest, name: str, max_batch: int, is_plan: bool,
                    opts: TritonOptions = TritonOptions()):
    """Parse `text` with Triton's ModelConfig schema and check it against the artifact's manifest."""
    config = parse_config(text)
    problems = []
    if config.name != name:
        problems.append(f"name {config.name!r} != {name!r}")
    expected_platform = "tensorrt_plan" if is_plan else "" if opts.backend == "openvino" else "onnxruntime_onnx"
    if config.platform != expected_platform:
        problems.append(f"platform {config.platform!r} != {expected_platform!r}")
    if not is_plan and opts.backend == "openvino" and config.backend != "openvino":
        problems.append("backend is not openvino")
    if config.max_batch_size != max_batch:
        problems.append(f"max_batch_size {config.max_batch_size} != {max_batch}")
    for key, tensors, expected in (("input", config.input, manifest.input), ("output", config.output,
                                                                               manifest.output)):
        if len(tensors) != 1:
            problems.append(f"{len(tensors)} {key}s instead of 1")
            continue
        if tensors[0].name != expected.name:
            problems.append(f"{key} name {tensors[0].name!r} != {expected.name!r}")
        if list(tensors[0].dims) != _dims(expected, key):
            problems.append(f"{key} dims {list(tensors[0].dims)} != {_dims(expected, key)}")
    if any(size > max_batch for size in config.dynamic_batching.preferred_batch_size):
        problems.append("a preferred batch size exceeds max_batch_size")
    if any(w.batch_size > max_batch for w in config.model_warmup):
        problems.append("a warm-up batch exceeds max_batch_size")
    if is_plan and dict(config.cc_model_filenames) != {manifest.compute_capability: "model.plan"}:
        problems.append(f"cc_model_filenames {dict(config.cc_model_filenames)} does not name model.plan")
    if problems:
        raise UsageError(f"the generated config.pbtxt for {name} is inconsistent with its artifact: "
                         + "; ".join(problems), "this is a bug in cnnx: please report it")
    return config


def _check_options(opts: TritonOptions, is_plan: bool) -> None:
    if opts.backend not in ONNX_BACKENDS:
        raise UsageError(f"unknown Triton backend '{opts.backend}'", f"choose one of {', '.join(ONNX_BACKENDS)}")
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
    if is_plan and opts.kind == "cpu":
        raise UsageError("a TensorRT plan runs only on a GPU: --kind cpu is impossible for it")
    if not is_plan and opts.backend == "openvino" and opts.kind == "gpu":
        raise UsageError("Triton's OpenVINO backend runs on CPU only", "use --kind cpu (or auto)")


def plan_model(artifact: str | Path, name: str | None = None, opts: TritonOptions = TritonOptions()) -> ModelPlan:
    """Read and check the artifact, decide the model folder's contents and validate its config."""
    artifact = Path(artifact)
    suffix = artifact.suffix.lower()
    refuse_manifest_as_artifact(artifact)
    if suffix not in (".onnx", ".plan"):
        raise UsageError(f"'{artifact}' is neither an ONNX model (.onnx) nor a TensorRT plan (.plan)")
    is_plan = suffix == ".plan"
    manifest = read_manifest(artifact, PlanManifest if is_plan else OnnxManifest)  # refuses a modified file
    _check_options(opts, is_plan)
    name = check_model_name(name if name is not None else f"{manifest.model}-{manifest.precision}")
    if is_plan:
        profile_max = manifest.max_batch
        if opts.max_batch is not None and opts.max_batch > profile_max:
            raise UsageError(f"--max-batch {opts.max_batch} exceeds the plan's profile maximum {profile_max}",
                             f"use --max-batch {profile_max} or less, or rebuild the plan with a larger profile")
        max_batch = opts.max_batch or profile_max
        if manifest.compute_capability is None:
            raise UsageError(f"the manifest of '{artifact}' records no GPU compute capability",
                             "rebuild the plan with this version of cnnx")
    else:
        max_batch = opts.max_batch or DEFAULT_MAX_BATCH
    if opts.preferred_batch and max(opts.preferred_batch) > max_batch:
        raise UsageError(f"a preferred batch size exceeds the max batch {max_batch}")
    labels = class_names(manifest) is not None
    text = render_config(manifest, artifact.name, name, max_batch, opts, is_plan, labels)
    validate_config(text, manifest, name, max_batch, is_plan, opts)
    return ModelPlan(artifact=artifact, manifest=manifest, name=name, max_batch=max_batch, config_text=text,
                     file_name=f"model{suffix}", labels=labels)


def write_model(repo: Path, plan: ModelPlan, force: bool = False) -> TritonModel:
    """Write one model folder atomically (temporary folder inside `repo`, then rename)."""
    final = repo / plan.name
    if (final.exists() or final.is_symlink()) and not force:
        raise UsageError(f"model folder '{final}' already exists", "pass --force to replace it, or --name")
    tmp = Path(tempfile.mkdtemp(dir=repo, prefix=f".{plan.name}.", suffix=".partial"))
    old: Path | None = None
    try:
        tmp.chmod(0o755)  # mkdtemp makes 0700; the server (often another user in a container) must read it
        version = tmp / VERSION
        version.mkdir()
        shutil.copyfile(plan.artifact, version / plan.file_name)
        if sha256_file(version / plan.file_name) != plan.manifest.artifact_sha256:
            raise UsageError(f"the copy of '{plan.artifact}' differs from the original (changed while copying?)",
                             "run the command again")
        shutil.copyfile(manifest_path(plan.artifact), version / "model.json")
        if plan.labels:
            (tmp / LABELS_NAME).write_text("\n".join(class_names(plan.manifest)) + "\n", encoding="utf-8")
        (tmp / "config.pbtxt").write_text(plan.config_text, encoding="utf-8")
        if final.exists() or final.is_symlink():  # --force: move the old folder aside, swap, then delete it
            old = Path(tempfile.mkdtemp(dir=repo, prefix=f".{plan.name}.", suffix=".old"))
            os.replace(final, old / plan.name)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists() and (old / plan.name).exists():
            os.replace(old / plan.name, final)  # put the previous model back
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    files = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    platform = "tensorrt_plan" if plan.file_name.endswith(".plan") else (
        "openvino" if 'backend: "openvino"' in plan.config_text else "onnxruntime_onnx")
    return TritonModel(name=plan.name, path=final, artifact=plan.artifact, config=final / "config.pbtxt",
                       max_batch=plan.max_batch, platform=platform, replaced=old is not None, files=files,
                       perf_command=f"perf_analyzer -m {plan.name} -b 1 --concurrency-range 1:4")


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
    return [write_model(repo, plan, force) for plan in plans]
