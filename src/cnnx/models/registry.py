"""The model registry: one ModelSpec per zoo name, collected from the family modules.

Reference numbers (params, GMACs) come from `shared/reference/zoo.md` (torchvision metadata or counted
with torch 2.13); the tests assert every model against them, so a spec is a checked claim, not a comment.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from ..data import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocess, imagenet_preprocess  # noqa: F401 (re-exported)
from ..errors import UsageError

# Family modules, in the order of the source post; each defines SPECS: list[ModelSpec].
FAMILY_MODULES = ("alexnet", "vgg", "nin", "googlenet", "inception", "resnet", "inception_resnet")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    variant: str  # one line: what this variant is and how it differs from its siblings
    paper: str
    builder: Callable[..., nn.Module] = field(repr=False)  # builder(num_classes=1000) -> nn.Module
    preprocess: Preprocess
    params: int  # parameters of the inference graph (eval mode: no auxiliary heads)
    gmacs: float  # multiply-accumulates at the native input size, batch 1, eval mode
    aux_params: int = 0  # parameters of auxiliary heads that only run in training mode
    checkpoint: str | None = None  # which public state dicts load into it, e.g. "torchvision resnet50"

    @property
    def input_size(self) -> int:
        return self.preprocess.crop

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.input_size, self.input_size)

    @property
    def has_aux(self) -> bool:
        return self.aux_params > 0

    def with_preprocess(self, preprocess: Preprocess) -> ModelSpec:
        """This model with another input transform (e.g. the one an artifact's manifest records)."""
        return replace(self, preprocess=preprocess)

    def at_input_size(self, input_size: int | None = None, resize: int | None = None) -> ModelSpec:
        """This model fed at another resolution (a network trained at another size): center-crop `input_size`
        (default: the native crop) after resizing the shorter side to `resize` (default: the native resize at
        the native size, else round(input_size / 0.875), ImageNet's crop ratio); same mean, std, interpolation."""
        if input_size is None and resize is None:
            return self
        crop = input_size or self.preprocess.crop
        resize = resize or (self.preprocess.resize if crop == self.preprocess.crop else round(crop / 0.875))
        for flag, value in (("--input-size", crop), ("--resize", resize)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{flag} must be a positive number of pixels, not {value!r}")
        if resize < crop:
            raise UsageError(f"--resize {resize} is smaller than the input size {crop}: the center crop would not fit",
                             f"pass --resize {crop} or more (default: round(input size / 0.875) = "
                             f"{round(crop / 0.875)})")
        return self.with_preprocess(replace(self.preprocess, resize=resize, crop=crop))

    def to_dict(self) -> dict:
        return {
            "name": self.name, "family": self.family, "variant": self.variant, "paper": self.paper,
            "input_shape": list(self.input_shape), "params": self.params, "aux_params": self.aux_params,
            "gmacs": self.gmacs, "checkpoint": self.checkpoint, "preprocess": self.preprocess.to_dict(),
        }


_SPECS: dict[str, ModelSpec] | None = None


def _registry() -> dict[str, ModelSpec]:
    global _SPECS
    if _SPECS is None:
        specs: dict[str, ModelSpec] = {}
        for module_name in FAMILY_MODULES:
            module = importlib.import_module(f"{__package__}.{module_name}")
            for spec in module.SPECS:
                assert spec.name not in specs, f"duplicate model name {spec.name}"
                specs[spec.name] = spec
        _SPECS = specs
    return _SPECS


def normalize_name(name: str) -> str:
    """Names are case-insensitive and `_` equals `-`, so torchvision spellings work too."""
    return name.strip().lower().replace("_", "-")


def list_models() -> list[ModelSpec]:
    return list(_registry().values())


def get_spec(name: str) -> ModelSpec:
    specs = _registry()
    key = normalize_name(name)
    if key in specs:
        return specs[key]
    close = difflib.get_close_matches(key, specs, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `cnnx list` to see every model"
    raise UsageError(f"unknown model '{name}'", hint)
