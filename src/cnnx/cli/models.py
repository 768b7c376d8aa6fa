"""`cnnx list` and `cnnx info`: the model zoo."""

from __future__ import annotations

import click
from rich.table import Table

from .common import console, emit_json, json_option, say


@click.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List the model zoo with reference parameter counts and GMACs."""
    from ..models.registry import list_models

    specs = list_models()
    if as_json:
        emit_json([s.to_dict() for s in specs])
        return
    table = Table(title="cnnx model zoo")
    for column, justify in (("name", "left"), ("family", "left"), ("params", "right"),
                            ("GMACs", "right"), ("input", "right"), ("checkpoint", "left")):
        table.add_column(column, justify=justify)
    for s in specs:
        table.add_row(s.name, s.family, f"{s.params / 1e6:.2f} M", f"{s.gmacs:.3f}",
                      f"{s.input_size}", s.checkpoint or "-")
    console.print(table)


@click.command("info")
@click.argument("name")
@json_option
def info_cmd(name: str, as_json: bool) -> None:
    """Show a model's spec and per-stage output shapes at its native input size."""
    from ..models.registry import get_spec
    from ..models.stages import stage_shapes

    spec = get_spec(name)
    shapes = stage_shapes(spec.builder(), spec)
    if as_json:
        emit_json({**spec.to_dict(), "stages": [{"name": n, "shape": list(s)} for n, s in shapes]})
        return
    pre = spec.preprocess
    console.print(f"[bold]{spec.name}[/] - {spec.family}: {spec.variant}", highlight=False)
    say(f"paper: {spec.paper}")
    say(f"params: {spec.params:,} (inference graph)"
        + (f" + {spec.aux_params:,} in auxiliary heads (training only)" if spec.has_aux else ""))
    say(f"GMACs: {spec.gmacs:.3f} at 1x{'x'.join(map(str, spec.input_shape))}")
    say(f"preprocessing: resize {pre.resize} ({pre.interpolation}), center-crop {pre.crop}, "
        f"mean {pre.mean}, std {pre.std}")
    say(f"checkpoints: {spec.checkpoint or 'none public; seeded initialisation'}")
    table = Table(title="stages")
    table.add_column("stage")
    table.add_column("output shape", justify="right")
    for stage, shape in shapes:
        table.add_row(stage, "x".join(map(str, shape)))
    console.print(table)
