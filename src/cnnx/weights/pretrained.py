"""The published ImageNet weights cnnx knows by name, and choosing one (`--pretrained [v1|v2]`).

The facts live in `cnnx/data/pretrained_weights.json`, one entry per weights file, each naming the publisher's
source it was read from (URL, file name, hash as published, license, accuracy, evaluation transform). Nothing
in it was measured by cnnx. `register` adds an entry at run time (your own mirror of other weights, and the
tests' loopback server); it is checked exactly like the shipped ones."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..data import INCEPTION_MEAN, INCEPTION_STD, Preprocess
from ..errors import UsageError
from ..models.registry import get_spec
from .download import WeightsFile

REGISTRY_FILE = Path(__file__).parents[1] / "data" / "pretrained_weights.json"
DEFAULT = "default"  # `--pretrained` without a value: the publisher's default weights
# Where each publisher's files are served; a shipped entry must point there.
PUBLISHER_HOSTS = {"torchvision": "download.pytorch.org", "timm": "huggingface.co"}
# torch.hub's rule for the hash in a torchvision file name (torch/hub.py HASH_REGEX, searched, first match).
HASH_IN_FILE_NAME = re.compile(r"-([a-f0-9]*)\.")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class PretrainedWeights:
    """One published weights file for a zoo model, as its publisher describes it."""

    model: str  # cnnx zoo name
    version: str  # "v1", "v2" (torchvision's IMAGENET1K_V1/V2; timm's only ImageNet weights are "v1")
    default: bool  # the publisher's default for this model (torchvision's DEFAULT)
    publisher: str  # "torchvision", "timm"
    name: str  # the publisher's own name, e.g. "ResNet50_Weights.IMAGENET1K_V2", "inception_resnet_v2.tf_in1k"
    url: str
    file_name: str  # the name in cnnx's cache and in a mirror
    sha256: str | None  # the full sha256, where the publisher gives it
    sha256_prefix: str | None  # the leading hex digits the publisher gives (torchvision: in the file name)
    transform: dict  # the publisher's evaluation transform: resize, crop, interpolation, mean, std
    transform_input: bool  # torchvision's GoogLeNet/Inception-v3: the model re-normalises its input to [-1, 1]
    classification: bool  # False for weights without a usable classifier (vgg16's feature-only file)
    top1: float | None  # published ImageNet-1k validation accuracy, %
    top5: float | None
    num_params: int | None  # as published (exact), or
    num_params_m: float | None  # as published in millions, where no exact count is published
    num_params_counts: str  # "inference graph" or "with auxiliary heads": what the publisher counted
    license: str  # as stated by the publisher, or "not stated" (license_note says where we looked)
    license_source: str
    recipe: str | None
    description: str
    source: str  # where every fact of this entry was read
    note: str | None = None

    @property
    def published_hash(self) -> str:
        """The hash a download must match: the full sha256 where published, else the published prefix."""
        return self.sha256 or self.sha256_prefix or ""

    @property
    def file(self) -> WeightsFile:
        return WeightsFile(url=self.url, file_name=self.file_name, sha256=self.published_hash)

    @property
    def label(self) -> str:
        return f"{self.publisher} {self.name}"

    @property
    def preprocess(self) -> Preprocess:
        """The transform cnnx applies for these weights. It equals the publisher's, except for weights that
        torchvision runs with transform_input=True: that model maps ImageNet-normalised input x to
        x * std / 0.5 + (mean - 0.5) / 0.5 = (pixel - 0.5) / 0.5, which cnnx's preprocessing does directly
        (mean = std = 0.5), so the exported graph stays plain (README, "Choices worth knowing")."""
        t = self.transform
        mean, std = (INCEPTION_MEAN, INCEPTION_STD) if self.transform_input else (t["mean"], t["std"])
        return Preprocess(resize=int(t["resize"]), crop=int(t["crop"]), mean=tuple(mean), std=tuple(std),
                          interpolation=t["interpolation"])

    @property
    def license_note(self) -> str:
        return _load().license_notes.get(self.publisher, "")

    def record(self) -> dict:
        """What a manifest records about these weights (with the full sha256 of the file loaded, added when it
        is fetched): enough to fetch and verify the same file again (`cnnx check FILE.onnx`) without this
        registry."""
        return {"source": "pretrained", "publisher": self.publisher, "name": self.name, "version": self.version,
                "url": self.url, "file_name": self.file_name, "published_sha256": self.published_hash}

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "published_hash": self.published_hash,
                "preprocess": self.preprocess.to_dict(), "license_note": self.license_note}


@dataclass
class _Registry:
    weights: list[PretrainedWeights]
    license_notes: dict[str, str]


_REGISTRY: _Registry | None = None


def _read_file() -> dict:
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def shipped_weights() -> list[PretrainedWeights]:
    """The entries of cnnx/data/pretrained_weights.json (without any registered at run time), each completed by
    its publisher's defaults: what every entry of that publisher shares unless it says otherwise."""
    data = _read_file()
    return [PretrainedWeights(**_with_defaults(entry, data.get("defaults", {}).get(entry["publisher"], {})))
            for entry in data["weights"]]


def _with_defaults(entry: dict, defaults: dict) -> dict:
    transform = {**defaults.get("transform", {}), **entry.get("transform", {})}
    return {**defaults, **entry, "transform": transform}


def _load() -> _Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _Registry(shipped_weights(), _read_file()["license_notes"])
    return _REGISTRY


def weights_for(model: str) -> list[PretrainedWeights]:
    """Every published weights entry of a zoo model (none for models without public weights)."""
    name = get_spec(model).name
    return [w for w in _load().weights if w.model == name]


def version_names() -> set[str]:
    """Every value `--pretrained` can take for some model: "default", the versions and the publishers' names."""
    names = {DEFAULT}
    for w in _load().weights:
        names |= {w.version, w.name.lower(), w.name.rpartition(".")[2].lower()}
    return names


def problems(entry: PretrainedWeights) -> list[str]:
    """What is wrong with an entry (empty when it is complete and consistent)."""
    found = []
    try:
        spec = get_spec(entry.model)
    except UsageError:
        return [f"unknown model '{entry.model}'"]
    if entry.model != spec.name:
        found.append(f"model '{entry.model}' is not spelled as the zoo spells it ('{spec.name}')")
    url = urlparse(entry.url)
    if url.scheme not in ("https", "http") or not url.netloc:
        found.append(f"url '{entry.url}' is not an http(s) URL")
    expected_host = PUBLISHER_HOSTS.get(entry.publisher)
    if expected_host and url.hostname != expected_host:
        found.append(f"url host '{url.hostname}' is not {entry.publisher}'s ({expected_host})")
    if not entry.file_name or "/" in entry.file_name or entry.file_name.startswith("."):
        found.append(f"file name '{entry.file_name}' is not a plain file name")
    if entry.sha256 is not None and (len(entry.sha256) != 64 or not _HEX.fullmatch(entry.sha256)):
        found.append("sha256 is not 64 lowercase hex digits")
    if entry.sha256_prefix is not None and (len(entry.sha256_prefix) < 8 or not _HEX.fullmatch(entry.sha256_prefix)):
        found.append("sha256_prefix is not at least 8 lowercase hex digits")
    if not entry.published_hash:
        found.append("no published hash (sha256 or sha256_prefix): an unverifiable file is never used")
    in_name = HASH_IN_FILE_NAME.search(entry.file_name)
    if in_name and entry.sha256_prefix is not None and in_name[1] != entry.sha256_prefix:
        found.append(f"the hash in the file name ({in_name[1]}) differs from sha256_prefix ({entry.sha256_prefix})")
    if entry.sha256 and entry.sha256_prefix and not entry.sha256.startswith(entry.sha256_prefix):
        found.append("sha256 does not start with sha256_prefix")
    try:
        pre = entry.preprocess
        if pre.interpolation not in ("bilinear", "bicubic") or not 0 < pre.crop <= pre.resize:
            found.append(f"invalid transform {entry.transform}")
        elif pre.crop != spec.input_size:
            found.append(f"transform crop {pre.crop} is not {spec.name}'s input size {spec.input_size}")
    except (KeyError, TypeError, ValueError):
        found.append(f"invalid transform {entry.transform}")
    if entry.classification and (entry.top1 is None or entry.top5 is None):
        found.append("no published top-1/top-5 accuracy")
    for field in ("version", "publisher", "name", "license", "source"):
        if not getattr(entry, field):
            found.append(f"empty '{field}'")
    return found


def register(entry: PretrainedWeights) -> None:
    """Make `entry` available by name (`--pretrained VERSION`, `create_model(..., pretrained=VERSION)`), e.g.
    weights your organisation publishes on its own server. Checked like the shipped entries."""
    found = problems(entry)
    if found:
        raise UsageError(f"weights entry {entry.model} {entry.version} is not usable: {'; '.join(found)}")
    registry = _load()
    same = [w for w in registry.weights if (w.model, w.version) == (entry.model, entry.version)]
    if same and same[0] != entry:
        raise UsageError(f"{entry.model} already has {entry.version} weights ({same[0].label})",
                         "register it under another version name")
    if entry.default and any(w.default for w in registry.weights if w.model == entry.model and w != entry):
        raise UsageError(f"{entry.model} already has default weights", "register it with default=False")
    if not same:
        registry.weights.append(entry)


def unregister(entry: PretrainedWeights) -> None:
    """Remove an entry added with `register` (the shipped entries stay)."""
    registry = _load()
    if entry in registry.weights and entry not in shipped_weights():
        registry.weights.remove(entry)


def models_with_weights() -> list[str]:
    """The zoo models that have published classification weights, in registry order."""
    return list(dict.fromkeys(w.model for w in _load().weights if w.classification))


def _describe(entries: list[PretrainedWeights]) -> str:
    return ", ".join(f"{w.version} ({w.name}" + (f", top-1 {w.top1}%" if w.top1 is not None else "")
                     + (", default" if w.default else "") + ")" for w in entries)


def pretrained_weights(model: str, choice: bool | str = True) -> PretrainedWeights:
    """The published weights that `choice` names for `model`: True or "default" for the publisher's default
    (torchvision's DEFAULT: IMAGENET1K_V2 where it exists, else V1), or a version ("v1", "v2") or the
    publisher's name ("IMAGENET1K_V2"). A model without published weights, or without that version, is a
    UsageError naming what exists."""
    spec = get_spec(model)
    entries = weights_for(spec.name)
    if not entries:
        family = [m for m in models_with_weights() if get_spec(m).family == spec.family]
        closest = difflib.get_close_matches(spec.name, family, n=len(family), cutoff=0) if family else []
        if closest:
            hint = (f"{', '.join(closest)} {'has' if len(closest) == 1 else 'have'} published weights "
                    f"(e.g. cnnx export {closest[0]} --pretrained); without --pretrained, {spec.name} is "
                    "initialised from --seed")
        else:
            hint = (f"no {spec.family} model has published weights; these do: {', '.join(models_with_weights())}"
                    f"; without --pretrained, {spec.name} is initialised from --seed")
        raise UsageError(f"'{spec.name}' has no published ImageNet weights ({spec.variant})", hint)
    if choice is True or str(choice).strip().lower() == DEFAULT:
        chosen = [w for w in entries if w.default] or entries[:1]
    else:
        key = str(choice).strip().lower()
        chosen = [w for w in entries if key in (w.version, w.name.lower(), w.name.rpartition(".")[2].lower())]
    if not chosen:
        publisher = entries[0].publisher
        raise UsageError(f"{publisher} publishes no '{choice}' weights for {spec.name}; it publishes: "
                         f"{_describe(entries)}",
                         f"use --pretrained {entries[0].version} (or plain --pretrained for the default)")
    entry = chosen[0]
    if not entry.classification:
        usable = [w for w in entries if w.classification]
        raise UsageError(f"{entry.label} cannot classify: {entry.note or 'it has no trained classifier'}",
                         f"use --pretrained {usable[0].version}" if usable else None)
    return entry
