"""`cnnx build` (a TensorRT plan from an ONNX artifact) and `cnnx doctor` (which backends run here)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from .common import StageProgress, console, emit_json, err_console, json_option, say


@click.command("build")
@click.argument("onnx_file", metavar="FILE.onnx")
@click.option("--min-batch", type=click.IntRange(1), default=1, show_default=True,
              help="Smallest batch of the profile.")
@click.option("--opt-batch", type=int, default=None,
              help="Batch the kernels are tuned for (default: --max-batch).")
@click.option("--max-batch", type=click.IntRange(1), default=32, show_default=True,
              help="Largest batch of the profile.")
@click.option("--workspace", "workspace_mib", type=int, default=None,
              help="Workspace memory pool limit in MiB (default: TensorRT's, all device memory).")
@click.option("--opt-level", "optimization_level", type=int, default=3, show_default=True,
              help="Builder optimization level 0..5 (higher: longer build, maybe faster engine).")
@click.option("--no-timing-cache", is_flag=True, default=False,
              help="Neither read nor write the timing cache in --out.")
@click.option("--no-tf32", is_flag=True, default=False, help="Disallow TF32 in fp32 layers (strict fp32 parity).")
@click.option("--hardware-compat", "hardware_compatibility", type=click.Choice(["ampere+", "same-cc"]),
              default=None,
              help="Let other GPUs load the plan (ampere+: compute capability >= 8.0; same-cc: this one); slower.")
@click.option("--version-compatible", is_flag=True, default=False,
              help="Let later TensorRT versions of the same major version load the plan; slower.")
@click.option("--out", "out_dir", default="engines", show_default=True, help="Output folder.")
@json_option
def build_cmd(onnx_file, min_batch, opt_batch, max_batch, workspace_mib, optimization_level, no_timing_cache,
              no_tf32, hardware_compatibility, version_compatible, out_dir, as_json) -> None:
    """Build a strongly typed TensorRT engine (plan + manifest) from a cnnx ONNX artifact.

    The precision is the ONNX file's (fp32, fp16 graph or int8 Q/DQ); no precision flags are set.
    Exit 3 when TensorRT or a GPU is missing (the ONNX file is untouched)."""
    from ..backends.tensorrt.build import build_engine

    def warn(message: str) -> None:
        if not as_json:
            err_console.print(message, style="yellow", highlight=False, markup=False)

    with StageProgress(not as_json) as progress:
        plan, manifest = build_engine(
            onnx_file, out_dir=out_dir, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
            workspace_mib=workspace_mib, optimization_level=optimization_level, timing_cache=not no_timing_cache,
            tf32=not no_tf32, hardware_compatibility=hardware_compatibility,
            version_compatible=version_compatible, progress=progress, warn=warn)
    if as_json:
        emit_json({"plan": str(plan), "manifest": manifest.to_dict()})
        return
    profile, gpu = manifest.profile, manifest.gpu
    say(f"wrote {plan} ({manifest.artifact_bytes / 2**20:.1f} MiB) in {manifest.build_seconds} s")
    say(f"TensorRT {manifest.tensorrt['version']} on {gpu['name']} (sm {gpu['compute_capability']}), "
        f"batch {profile['min_batch']}..{profile['max_batch']} (opt {profile['opt_batch']}), "
        f"precision {manifest.precision or 'as in the ONNX file'}, "
        f"tf32 {'on' if manifest.build_flags['tf32'] else 'off'}")


@click.command("doctor")
@json_option
def doctor_cmd(as_json: bool) -> None:
    """Which backends can run on this machine and, for each that cannot, why."""
    from ..backends.doctor import doctor_report

    report = doctor_report()
    if as_json:
        emit_json(report)
        return
    gpu = report["gpu"]
    lines = [f"GPU {gpu['name']}, compute capability {gpu['compute_capability']}, {gpu['memory_gib']} GiB, "
             f"driver {gpu.get('driver') or '?'}" if gpu else "GPU none visible to PyTorch"]
    lines += [runtime_line(package, info) for package, info in report["runtimes"].items()]
    for line in lines:
        say(line)
    table = Table(title="backends")
    table.add_column("backend")
    table.add_column("usable")
    table.add_column("why not")
    for name, status in report["backends"].items():
        table.add_row(name, "[green]yes[/]" if status["usable"] else "[red]no[/]", escape(status["reason"] or ""))
    console.print(table)


def runtime_line(package: str, info: dict) -> str:
    """`onnxruntime 1.32.0 (providers: CPUExecutionProvider)`: a runtime's version and what its Runner reports."""
    if not info["installed"]:
        return f"{package} not installed"
    if "error" in info:
        return f"{package} {info['version'] or ''} installed but not usable: {info['error']}"
    details = "; ".join(f"{key.replace('_', ' ')}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
                        for key, value in info.items() if key not in ("installed", "version"))
    return f"{package} {info['version']}" + (f" ({details})" if details else "")
