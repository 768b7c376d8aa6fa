"""What a model looks like inside: per-stage output shapes at the native input size, classes at an input size."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import UsageError, first_line
from ..weights.checkpoints import aux_head_names
from .registry import ModelSpec, get_spec


def stage_shapes(model: nn.Module, spec: ModelSpec) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of each top-level stage for one image at the native size (eval mode).

    A top-level Sequential named `features` (AlexNet, VGG, NiN) is opened up, and only its layers that
    change the shape are listed, so the table shows where resolution and width change."""
    stages: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if name == "features" and isinstance(child, nn.Sequential):
            stages += [(f"features.{i}", layer) for i, layer in child.named_children()]
        elif name not in aux_head_names(model):
            stages.append((name, child))
    shapes: list[tuple[str, tuple[int, ...]]] = []
    hooks = [module.register_forward_hook(
        lambda m, args, out, name=name: shapes.append((name, tuple(out.shape))))
        for name, module in stages]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *spec.input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    listed: list[tuple[str, tuple[int, ...]]] = []
    previous: tuple[int, ...] = (1, *spec.input_shape)
    for name, shape in shapes:
        if not name.startswith("features.") or shape != previous:
            listed.append((name, shape))
        previous = shape
    return listed


def classes_at_input_size(model: nn.Module, spec: ModelSpec) -> int:
    """Run the model once at its input size and return how many classes it outputs. A size the network cannot
    take (too small for its strides and pooling) is a UsageError here, before any file is written."""
    with input_size_errors(spec), torch.no_grad():
        logits = model(torch.zeros(1, *spec.input_shape))
    return int(logits.shape[-1])


@contextlib.contextmanager
def input_size_errors(spec: ModelSpec):
    """A forward pass at an input size the network cannot take fails with a UsageError naming the size."""
    try:
        yield
    except RuntimeError as exc:
        native = get_spec(spec.name).input_size
        raise UsageError(f"{spec.name} cannot run at {spec.input_size}x{spec.input_size} input: "
                         f"{first_line(exc)}",
                         f"pass a larger --input-size (its native size is {native})") from None
