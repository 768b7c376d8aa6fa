"""Typed manifests: the provenance file written beside every artifact, and read back before it is used.

    export/resnet50-fp32.onnx      the artifact
    export/resnet50-fp32.json      its OnnxManifest: model, precision, input/output, preprocessing, weights,
                                   nodes, simplification, precision details, parity verdict, tools, timings
    engines/resnet50-fp16-b1-32.plan / .json   a TensorRT plan and its PlanManifest (profile, TensorRT
                                   version, GPU, build flags, source ONNX hash)

Each manifest has one writer (export/pipeline.py, backends/tensorrt/build.py) and one reader
(`read_manifest`), which checks the format version, the kind, every required field and the artifact's
sha256, so that a damaged, old or mismatched file is refused with a message that says what to do. The sha256
covers only the artifact, so for ONNX artifacts the reader also binds the manifest to the graph itself (read
with `onnx`, never run): input/output names and shapes, the opset, and the model and precision that export
stamps into the graph's metadata must all agree, else the manifest was edited or belongs to another file.
This module needs no torch: the runtime API reads manifests in inference-only installs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, overload

from .artifacts import write_json
from .data import Preprocess, check_class_names, imagenet_labels
from .errors import UsageError
from .naming import artifact_stem

FORMAT = "cnnx-manifest/2"
REEXPORT_HINT = "re-export the artifact with this version of cnnx (cnnx export MODEL)"
# Keys of the ONNX graph's metadata_props that export stamps, so that a manifest can be bound to its graph.
GRAPH_METADATA = {"cnnx.model": "model", "cnnx.precision": "precision"}


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name, shape with the symbolic batch first ("batch", 3, 224, 224), dtype."""

    name: str
    shape: tuple
    dtype: str = "float32"

    @property
    def dims(self) -> tuple[int, ...]:
        """The shape without the batch axis."""
        return tuple(int(d) for d in self.shape[1:])

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, entry, what: str) -> TensorSpec:
        try:
            spec = cls(name=str(entry["name"]), shape=tuple(entry["shape"]), dtype=str(entry.get("dtype", "float32")))
            _ = spec.dims  # raises unless every non-batch dim is an integer
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"the manifest's '{what}' entry is damaged: {entry!r} (name, shape and dtype "
                             "expected)", REEXPORT_HINT) from None
        if not spec.shape:
            raise UsageError(f"the manifest's '{what}' entry has an empty shape", REEXPORT_HINT)
        return spec


_ACCEPTED: dict[type, tuple[type, ...]] = {float: (int, float)}  # JSON writes 3.0 as 3
_NESTED = {TensorSpec: TensorSpec.from_dict, Preprocess: lambda value, name: Preprocess.from_dict(value)}


def _declared(annotation) -> tuple[type, bool]:
    """(the type, whether None is allowed) of a field annotated `T` or `T | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        kinds = [a for a in args if a is not type(None)]
        return kinds[0], len(kinds) < len(args)
    return typing.get_origin(annotation) or annotation, False


_M = TypeVar("_M", bound="_Manifest")


class _Manifest:
    """Shared (de)serialisation: required fields, simple type checks, nested TensorSpec/Preprocess."""

    KIND: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    if typing.TYPE_CHECKING:  # what the shared code reads of the dataclasses below (both declare these)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
        artifact_sha256: str
        model: str
        precision: str | None
        input: TensorSpec
        output: TensorSpec | None
        preprocess: Preprocess | None
        labels: list | None

        @property
        def q_dq_form(self) -> str | None: ...

    @property
    def stem(self) -> str:
        """The artifact's name without suffix (naming.py), from which its plan's and Triton model's names come."""
        return artifact_stem(self.model, self.precision, self.q_dq_form)

    def to_dict(self) -> dict:
        data = {"format": FORMAT, "kind": self.KIND}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return data

    @classmethod
    def from_dict(cls: type[_M], data: dict, where: str) -> _M:
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UsageError(f"manifest '{where}' lacks {', '.join(missing)}", REEXPORT_HINT)
        values = {}
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            kind, optional = _declared(hints[f.name])
            if value is None and optional:
                pass
            elif kind in _NESTED:
                value = _NESTED[kind](value, f.name)
            elif not isinstance(value, _ACCEPTED.get(kind, kind)):
                raise UsageError(f"manifest '{where}' has a damaged '{f.name}' entry ({value!r})", REEXPORT_HINT)
            values[f.name] = value
        manifest = cls(**values)
        labels = getattr(manifest, "labels", None)
        if labels is not None:
            classes = manifest.output.shape[-1] if manifest.output else None
            if not all(isinstance(x, str) for x in labels) or (classes is not None and len(labels) != classes):
                raise UsageError(f"manifest '{where}' has a damaged 'labels' entry ({len(labels)} entries for "
                                 f"{classes} classes)", REEXPORT_HINT)
            check_class_names(labels, f"manifest '{where}'")
        return manifest


@dataclass
class OnnxManifest(_Manifest):
    """Beside every exported ONNX artifact (`<model>-<precision>.onnx` -> `.json`)."""

    KIND: ClassVar[str] = "onnx"
    DESCRIPTION: ClassVar[str] = "an ONNX artifact"
    artifact: str  # the artifact's file name
    artifact_sha256: str
    artifact_bytes: int
    model: str
    family: str
    variant: str
    precision: str  # fp32 / fp16 / int8
    opset: int
    input: TensorSpec
    output: TensorSpec
    preprocess: Preprocess
    weights: dict  # {"source": "seed", "seed": 0} or {"source": "checkpoint", "path", "sha256"}
    nodes: dict  # node counts: exported, simplified, artifact
    simplify: dict  # onnxsim's result or why it was rejected
    precision_details: dict  # fp16: nodes kept in fp32; int8: calibration, Q/DQ form, float layers, accuracy
    tools: dict
    created: str
    timings_s: dict = field(default_factory=dict)
    parity: dict | None = None  # the check against eager PyTorch, when one ran
    labels: list | None = None  # class names by index (export --labels); None: see class_names()
    export_key: str | None = None  # what the artifact was made from (export/reuse.py): the same key is reused
    exporter: dict | None = None  # which of torch's exporters wrote the graph, and why it fell back (export/onnx.py)

    @property
    def num_classes(self) -> int:
        return int(self.output.shape[-1])

    @property
    def q_dq_form(self) -> str | None:
        """int8: the Q/DQ form ("tensorrt" or "cpu"); None for the other precisions."""
        return self.precision_details.get("target") if self.precision == "int8" else None

    @property
    def int8_cpus(self) -> str | None:
        """cpu-form int8: the CPUs its weights are for, "vnni" or "any" (export/qdq_forms.py); else None."""
        return (self.precision_details.get("recipe") or {}).get("cpus") if self.precision == "int8" else None


@dataclass
class PlanManifest(_Manifest):
    """Beside every TensorRT plan built by `cnnx build`."""

    KIND: ClassVar[str] = "tensorrt-plan"
    DESCRIPTION: ClassVar[str] = "a TensorRT plan"
    artifact: str
    artifact_sha256: str
    artifact_bytes: int
    model: str
    precision: str | None  # None for an ONNX file without a cnnx manifest
    source: dict  # onnx path, its sha256 and manifest
    input: TensorSpec
    output: TensorSpec | None
    preprocess: Preprocess | None  # from the source ONNX manifest
    profile: dict  # the optimisation profile: input, min/opt/max shapes and batches
    tensorrt: dict  # version, strongly_typed
    gpu: dict  # name, compute_capability, cuda, driver
    build_flags: dict
    timing_cache: dict
    build_seconds: float
    rebuild_command: str
    tools: dict
    created: str
    labels: list | None = None  # class names by index, from the source ONNX manifest
    q_dq_form: str | None = None  # int8: the source's Q/DQ form

    @property
    def min_batch(self) -> int:
        return int(self.profile["min_batch"])

    @property
    def max_batch(self) -> int:
        return int(self.profile["max_batch"])

    @property
    def compute_capability(self) -> str | None:
        value = self.gpu.get("compute_capability")
        return None if value is None else str(value)


Manifest = OnnxManifest | PlanManifest
ManifestKind = type[OnnxManifest] | type[PlanManifest]
KINDS: dict[str, ManifestKind] = {OnnxManifest.KIND: OnnxManifest, PlanManifest.KIND: PlanManifest}
SUFFIX_KINDS: dict[str, ManifestKind] = {".onnx": OnnxManifest, ".plan": PlanManifest}  # what an artifact file is


def manifest_kind(artifact: str | Path) -> ManifestKind:
    """The manifest class of an artifact file, by its suffix; any other file is refused."""
    kind = SUFFIX_KINDS.get(Path(artifact).suffix.lower())
    if kind is None:
        raise UsageError(f"'{artifact}' is neither an ONNX model (.onnx) nor a TensorRT plan (.plan)",
                         "pass an artifact written by `cnnx export` or `cnnx build`")
    return kind


def class_names(manifest: Manifest) -> list[str] | None:
    """The class names of an artifact's outputs, by index: those recorded at export (`--labels`), else the
    ImageNet-1k names for 1000 outputs; None when the names are unknown (another number of classes)."""
    if manifest.labels:
        return list(manifest.labels)
    if manifest.output is not None and manifest.output.shape[-1] == 1000:
        return imagenet_labels()
    return None


def manifest_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def write_manifest(artifact: str | Path, manifest: Manifest) -> Path:
    """Write the manifest beside `artifact` (atomically); returns its path."""
    path = manifest_path(artifact)
    write_json(path, manifest.to_dict())
    return path


def parse_manifest(data, where: str) -> Manifest:
    """A manifest object from its JSON data, validated (UsageError naming what is wrong)."""
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("cnnx-manifest/"):
        raise UsageError(f"'{where}' is not a cnnx manifest", REEXPORT_HINT)
    if data["format"] != FORMAT:
        raise UsageError(f"'{where}' was written by another version of cnnx (manifest format "
                         f"{data['format']!r}, this cnnx reads {FORMAT!r})", REEXPORT_HINT)
    kind = KINDS.get(data.get("kind", ""))
    if kind is None:
        raise UsageError(f"'{where}' has an unknown manifest kind {data.get('kind')!r}", REEXPORT_HINT)
    return kind.from_dict(data, where)


def refuse_manifest_as_artifact(path: Path) -> None:
    """A manifest passed where its artifact belongs: say which file to pass instead."""
    if path.suffix.lower() == ".json":
        siblings = [p.name for p in (path.with_suffix(".onnx"), path.with_suffix(".plan")) if p.is_file()]
        raise UsageError(f"'{path}' is a manifest, not an artifact",
                         f"pass the artifact it describes: {siblings[0] if siblings else 'the .onnx or .plan file'}")


@overload
def read_manifest(artifact: str | Path, kind: type[_M]) -> _M: ...
@overload
def read_manifest(artifact: str | Path, kind: None = None) -> Manifest: ...
def read_manifest(artifact: str | Path, kind: type[_Manifest] | None = None) -> _Manifest:
    """The manifest of an artifact, validated and checked against the artifact's bytes (and its kind)."""
    artifact = Path(artifact)
    refuse_manifest_as_artifact(artifact)
    if not artifact.is_file():
        raise UsageError(f"artifact '{artifact}' does not exist", "export one first: cnnx export MODEL")
    path = manifest_path(artifact)
    if not path.is_file():
        raise UsageError(f"'{artifact}' has no manifest ('{path.name}' is missing), so cnnx cannot tell which "
                         "model and weights it came from",
                         "re-export it with `cnnx export MODEL`, which writes both files")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"manifest '{path}' is not readable JSON ({exc})", REEXPORT_HINT) from None
    manifest = parse_manifest(data, str(path))
    if kind is not None and not isinstance(manifest, kind):
        raise UsageError(f"'{artifact}' is {manifest.DESCRIPTION}, not {kind.DESCRIPTION}",
                         "pass an artifact of the expected kind")
    data = artifact.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest.artifact_sha256:
        raise UsageError(f"'{artifact}' does not match its manifest (sha256 differs): the file was modified, "
                         "truncated or replaced after export", f"re-export it: cnnx export {manifest.model}")
    if isinstance(manifest, OnnxManifest):
        bind_to_graph(manifest, data, str(path))
    return manifest


def _shape(value) -> tuple:
    """A graph input/output's shape as manifests write it: symbolic dims (the dynamic batch) as "batch"."""
    return tuple(d.dim_value if d.HasField("dim_value") else "batch" for d in value.type.tensor_type.shape.dim)


def bind_to_graph(manifest: OnnxManifest, data: bytes, where: str) -> None:
    """Refuse a manifest whose claims about the graph (I/O names and shapes, opset, model, precision) differ
    from the ONNX bytes themselves, naming the field."""
    import onnx

    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError and friends for bytes that are not a model
        raise UsageError(f"'{manifest.artifact}' is not a readable ONNX model ({exc.__class__.__name__})",
                         REEXPORT_HINT) from None
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    metadata = {p.key: p.value for p in proto.metadata_props}
    found = {
        "input": (inputs[0].name, _shape(inputs[0])) if len(inputs) == 1 else None,
        "output": (proto.graph.output[0].name, _shape(proto.graph.output[0])) if len(proto.graph.output) == 1 else None,
        "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None),
        **{field: metadata.get(key) for key, field in GRAPH_METADATA.items()},
    }
    claimed = {"input": (manifest.input.name, tuple(manifest.input.shape)),
               "output": (manifest.output.name, tuple(manifest.output.shape)),
               "opset": manifest.opset, "model": manifest.model, "precision": manifest.precision}
    wrong = [f"{field}: manifest says {claimed[field]!r}, the graph has {found[field]!r}"
             for field in claimed if claimed[field] != found[field]]
    if wrong:
        raise UsageError(f"manifest '{where}' does not describe its graph ({'; '.join(wrong)}): it was edited or "
                         "belongs to another file", REEXPORT_HINT)
