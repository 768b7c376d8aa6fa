"""`cnnx list` and `cnnx info`: the model zoo."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.table import Table

from .common import console, emit_json, json_option, say

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def _pretrained_summary(name: str) -> dict | None:
    """What `cnnx list` says about a model's published weights: the default's version and accuracy."""
    from ..weights import pretrained_weights, weights_for

    entries = weights_for(name)
    if not entries:
        return None
    default = pretrained_weights(name)
    return {"default": default.version, "versions": [w.version for w in entries if w.classification],
            "publisher": default.publisher, "name": default.name, "top1": default.top1, "top5": default.top5}


@click.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List the model zoo with reference parameter counts, GMACs and published weights."""
    from ..models.registry import list_models

    specs = list_models()
    if as_json:
        emit_json([{**s.to_dict(), "pretrained": _pretrained_summary(s.name)} for s in specs])
        return
    table = Table(title="cnnx model zoo")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("name", "left"), ("family", "left"), ("params", "right"), ("GMACs", "right"), ("input", "right"),
        ("checkpoint", "left"), ("--pretrained top-1", "right"))
    for column, justify in columns:
        table.add_column(column, justify=justify)
    for s in specs:
        weights = _pretrained_summary(s.name)
        table.add_row(s.name, s.family, f"{s.params / 1e6:.2f} M", f"{s.gmacs:.3f}",
                      f"{s.input_size}", s.checkpoint or "-",
                      f"{weights['top1']:.2f}% ({weights['default']})" if weights else "-")
    console.print(table)
    say("--pretrained top-1: the publisher's ImageNet-1k accuracy of the default weights (cnnx info MODEL lists "
        "every version)")


def _describe_preprocess(pre) -> str:
    return (f"resize {pre.resize} ({pre.interpolation}), center-crop {pre.crop}, mean {pre.mean}, std {pre.std}")


@click.command("info")
@click.argument("name")
@json_option
def info_cmd(name: str, as_json: bool) -> None:
    """Show a model's spec and per-stage output shapes at its native input size."""
    from ..models.registry import get_spec
    from ..models.stages import stage_shapes
    from ..weights import weights_for

    spec = get_spec(name)
    shapes = stage_shapes(spec.builder(), spec)
    weights = weights_for(spec.name)
    if as_json:
        emit_json({**spec.to_dict(), "stages": [{"name": n, "shape": list(s)} for n, s in shapes],
                   "pretrained": [w.to_dict() for w in weights]})
        return
    pre = spec.preprocess
    console.print(f"[bold]{spec.name}[/] - {spec.family}: {spec.variant}", highlight=False)
    say(f"paper: {spec.paper}")
    say(f"params: {spec.params:,} (inference graph)"
        + (f" + {spec.aux_params:,} in auxiliary heads (training only)" if spec.has_aux else ""))
    say(f"GMACs: {spec.gmacs:.3f} at 1x{'x'.join(map(str, spec.input_shape))}")
    say(f"preprocessing: {_describe_preprocess(pre)}" + (" (seeded or --weights; published weights bring their "
                                                         "own, below)" if weights else ""))
    say(f"checkpoints: {spec.checkpoint or 'none public; seeded initialisation'}")
    if weights:
        say(f"published weights (cnnx export {spec.name} --pretrained [VERSION]):")
    for w in weights:
        accuracy = (f"top-1 {w.top1}%, top-5 {w.top5}% (ImageNet-1k validation, as published)" if w.classification
                    else f"not for classification: {w.note}")
        say(f"  {w.version}{' (default)' if w.default else ''}: {w.label}")
        for line in (accuracy, f"transform: {_describe_preprocess(w.preprocess)}"
                     + (" (= torchvision's ImageNet mean/std with transform_input=True)" if w.transform_input else ""),
                     f"file: {w.file_name}, sha256 {'' if w.sha256 else 'prefix '}{w.published_hash}, {w.url}",
                     f"license: {w.license} ({w.license_source})", f"source: {w.source}"):
            say(f"    {line}")
    if weights:
        say(f"  license note ({weights[0].publisher}): {weights[0].license_note}")
    table = Table(title="stages")
    table.add_column("stage")
    table.add_column("output shape", justify="right")
    for stage, shape in shapes:
        table.add_row(stage, "x".join(map(str, shape)))
    console.print(table)
