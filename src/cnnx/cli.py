"""The `cnnx` command line: parse options, call the library, render a table or JSON.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 a required backend is unavailable,
4 an internal error (a bug: please report it with the --debug traceback)."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import BackendUnavailable, CheckFailed, CnnxError, UsageError

# Rich wraps at 80 columns when output is not a terminal; tables of model names need more.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class CnnxGroup(click.Group):
    """Turns CnnxError into a message and an exit code; a traceback only with --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CnnxError as exc:
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]internal error:[/] {exc.__class__.__name__}: {escape(str(exc))}\n"
                              "run again with `cnnx --debug ...` for the traceback and report it",
                              markup=True, highlight=False)
            ctx.exit(4)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(cls=CnnxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cnnx")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Export, verify, measure and deploy the classic CNNs."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(as_json: bool) -> None:
    """List the model zoo with reference parameter counts and GMACs."""
    from .models.registry import list_models

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


@cli.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info_cmd(name: str, as_json: bool) -> None:
    """Show a model's spec and per-stage output shapes at its native input size."""
    from .inspect import stage_shapes
    from .models.registry import get_spec

    spec = get_spec(name)
    shapes = stage_shapes(spec.builder(), spec)
    if as_json:
        emit_json({**spec.to_dict(), "stages": [{"name": n, "shape": list(s)} for n, s in shapes]})
        return
    pre = spec.preprocess
    console.print(f"[bold]{spec.name}[/] - {spec.family}: {spec.variant}")
    console.print(f"paper: {spec.paper}")
    console.print(f"params: {spec.params:,} (inference graph)"
                  + (f" + {spec.aux_params:,} in auxiliary heads (training only)" if spec.has_aux else ""))
    console.print(f"GMACs: {spec.gmacs:.3f} at 1x{'x'.join(map(str, spec.input_shape))}")
    console.print(f"preprocessing: resize {pre.resize} ({pre.interpolation}), center-crop {pre.crop}, "
                  f"mean {pre.mean}, std {pre.std}")
    console.print(f"checkpoints: {spec.checkpoint or 'none public; seeded initialisation'}")
    table = Table(title="stages")
    table.add_column("stage")
    table.add_column("output shape", justify="right")
    for stage, shape in shapes:
        table.add_row(stage, "x".join(map(str, shape)))
    console.print(table)


def threshold_options(fn):
    """Options that override the default parity thresholds of every artifact checked."""
    for flag, help_text in (
        ("--max-rel", "Fail when max |diff| / max |reference| exceeds this."),
        ("--min-cosine", "Fail when the lowest per-sample cosine similarity is below this."),
        ("--min-sqnr", "Fail when SQNR (dB) is below this."),
        ("--min-top1", "Fail when top-1 agreement (0..1) is below this."),
        ("--min-top5", "Fail when top-5 overlap (0..1) is below this."),
    ):
        fn = click.option(flag, type=float, default=None, help=help_text)(fn)
    return fn


def thresholds_from(options: dict, precision: str):
    """The default thresholds of `precision`, with any command-line overrides applied."""
    from dataclasses import replace

    from .parity import DEFAULT_THRESHOLDS

    overrides = {"max_rel": options.get("max_rel"), "min_cosine": options.get("min_cosine"),
                 "min_sqnr_db": options.get("min_sqnr"), "min_top1": options.get("min_top1"),
                 "min_top5": options.get("min_top5")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(DEFAULT_THRESHOLDS[precision], **overrides) if overrides else None


class StageProgress:
    """A spinner on stderr naming the current stage (stdout stays clean for --json)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and err_console.is_terminal
        self.status = err_console.status("") if self.enabled else None
        self.quiet = not enabled

    def __enter__(self):
        if self.status:
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)

    def __call__(self, stage: str) -> None:
        if self.status:
            self.status.update(stage)
        elif not self.quiet:
            err_console.print(f"[dim]- {stage}[/]", highlight=False)


def parse_precisions(fp16: bool, precision: str | None, int8: bool = False) -> tuple[str, ...]:
    chosen = [p.strip() for p in (precision or "").split(",") if p.strip()]
    chosen += ["fp16"] * fp16 + ["int8"] * int8
    return tuple(dict.fromkeys(chosen)) or ("fp32",)


def render_exports(results, engines, as_json: bool) -> None:
    from .reports import parity_table

    if as_json:
        emit_json({"artifacts": [{"path": str(r.path), "manifest": r.manifest} for r in results],
                   "tensorrt": [e.to_dict() for e in engines]})
        return
    table = Table(title="artifacts")
    for column in ("file", "precision", "size", "nodes", "kept in float", "parity"):
        table.add_column(column, justify="right" if column in ("size", "nodes", "kept in float") else "left")
    for r in results:
        m = r.manifest
        details = m["precision_details"]
        kept = details.get("fp32_node_count", details.get("float_layers", {}).get("count", "-"))
        verdict = {True: "[green]PASS[/]", False: "[bold red]FAIL[/]", None: "not checked"}[r.passed]
        table.add_row(str(r.path), m["precision"], f"{m['artifact_bytes'] / 2**20:.1f} MiB",
                      f"{m['nodes']['exported']} -> {m['nodes']['artifact']}", str(kept), verdict)
    console.print(table)
    checked = [r.check for r in results if r.check is not None]
    if checked:
        console.print(parity_table(checked))
        for check in checked:
            for failure in check.failures:
                console.print(f"{check.artifact}: {failure}", style="red", highlight=False, markup=False)
    for engine in engines:
        if engine.built:
            console.print(f"TensorRT engine: {engine.plan}", highlight=False, markup=False)
        elif engine.command:
            console.print(f"TensorRT engine: not built: {engine.reason}. On a machine with an NVIDIA GPU and "
                          f"TensorRT run: {engine.command}", highlight=False, markup=False)
            break  # the reason is the same for every artifact
    console.print(f"next: cnnx check {' '.join(str(r.path) for r in results)}", highlight=False, markup=False)


@cli.command("export")
@click.argument("name")
@click.option("--fp16", is_flag=True, help="Write the fp16 variant (fp32 inputs/outputs).")
@click.option("--precision", default=None, help="Comma-separated precisions to write, e.g. fp32,fp16.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="A torchvision/timm state-dict file (.pth/.safetensors) to load.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the initialisation without --weights.")
@click.option("--out", "out_dir", default="export", show_default=True, help="Output folder.")
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset.")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim.")
@click.option("--no-check", is_flag=True, help="Skip the parity check against eager PyTorch.")
@click.option("--images", type=click.Path(), default=None, help="Folder of images for the parity check.")
@click.option("--int8", "int8_flag", is_flag=True, help="Write the int8 Q/DQ variant (needs --calib-data).")
@click.option("--calib-data", default=None,
              help="INT8 calibration data: an image folder, FILE.npy/.npz (preprocessed NCHW), 'samples' "
                   "(the shipped photos) or 'random' (noise; explicit only).")
@click.option("--calib-size", type=int, default=64, show_default=True, help="Calibration tensors to use.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True)
@click.option("--int8-target", type=click.Choice(["tensorrt", "cpu"]), default=None,
              help="Q/DQ form: tensorrt (symmetric int8) or cpu (uint8 activations, ONNX Runtime's fast path). "
                   "Default: cpu with --target onnx, else tensorrt.")
@click.option("--int8-exclude", default=None,
              help="'auto' (keep the most harmful layers in float until 30 dB SQNR) or NODE,NODE,...")
@click.option("--recalibrate", is_flag=True, help="Ignore the calibration cache.")
@click.option("--target", type=click.Choice(["auto", "tensorrt", "onnx"]), default="auto", show_default=True,
              help="auto: also build a TensorRT engine when TensorRT and a GPU are usable; tensorrt: require it.")
@click.option("--max-batch", type=int, default=32, show_default=True, help="TensorRT profile's largest batch.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@threshold_options
def export_cmd(name, fp16, precision, weights, seed, out_dir, opset, no_simplify, no_check, images, int8_flag,
               calib_data, calib_size, calib_method, int8_target, int8_exclude, recalibrate, target, max_batch,
               as_json, **limits) -> None:
    """Export MODEL to ONNX (dynamic batch), simplified, in fp32/fp16/int8, with a parity check, and a
    TensorRT engine where TensorRT and a GPU are usable."""
    from .backends.tensorrt import engine_for_artifact
    from .export.pipeline import export_model
    from .models.registry import get_spec

    get_spec(name)  # fail fast on a typo, before any work
    precisions = parse_precisions(fp16, precision, int8_flag)
    exclude = int8_exclude if int8_exclude in (None, "auto") else [n.strip() for n in int8_exclude.split(",")]
    with StageProgress(not as_json) as progress:
        results = export_model(name, precisions=precisions, out_dir=out_dir, weights=weights, seed=seed,
                               opset=opset, simplify_graph=not no_simplify, check=not no_check, images=images,
                               thresholds={p: thresholds_from(limits, p) for p in precisions},
                               progress=progress, calib_data=calib_data, calib_size=calib_size,
                               calib_method=calib_method,
                               int8_target=int8_target or ("cpu" if target == "onnx" else "tensorrt"),
                               int8_exclude=exclude, recalibrate=recalibrate)
        engines = [engine_for_artifact(r.path, target, max_batch=max_batch) for r in results]
    render_exports(results, engines, as_json)
    if any(r.passed is False for r in results):
        raise CheckFailed("parity check failed for " + ", ".join(str(r.path) for r in results if r.passed is False),
                          "see the metrics above; the artifact is kept and its manifest records the failure")


@cli.command("check")
@click.argument("targets", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Export and check every zoo model.")
@click.option("--precision", default="fp32,fp16", show_default=True,
              help="Precisions to export and check for MODEL names (files carry their own).")
@click.option("--images", type=click.Path(), default=None, help="Folder of images (default: shipped photos).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint of the eager reference (default: what the manifest names).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino", "onnxruntime-cuda", "onnxruntime-tensorrt",
                                              "tensorrt"]), default="onnxruntime", show_default=True,
              help="Where artifacts run (tensorrt builds or reuses a plan from the ONNX file).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None, help="Also write JUnit XML here.")
@threshold_options
def check_cmd(targets, check_all, precision, images, weights, backend, as_json, junit, **limits) -> None:
    """Compare artifacts (FILE.onnx) or freshly exported models (MODEL) with eager PyTorch fp32.

    Exit 0 when every artifact passes, 1 when one fails its thresholds."""
    import tempfile
    from pathlib import Path

    from .export.pipeline import export_model
    from .models.registry import get_spec, list_models
    from .verify import check_artifact

    names = [s.name for s in list_models()] if check_all else []
    files = []
    for target in targets:
        if target.endswith(".onnx") or Path(target).exists():
            files.append(target)
        else:
            names.append(get_spec(target).name)  # unknown names fail here, before any work
    if not files and not names:
        raise UsageError("nothing to check", "name artifacts (FILE.onnx), models, or pass --all")
    if images is not None:
        from .data import image_files

        image_files(images)  # a bad folder fails before any export
    precisions = parse_precisions(False, precision)
    results = []
    with StageProgress(not as_json) as progress, tempfile.TemporaryDirectory(prefix="cnnx-check-") as tmp:
        for f in files:
            progress(f"checking {f}")
            manifest_precision = _artifact_precision(f)
            results.append(check_artifact(f, images=images, weights=weights, backend=backend,
                                          thresholds=thresholds_from(limits, manifest_precision)))
        for name in names:  # int8 variants of MODEL names are calibrated on the shipped photos
            on_ort = backend == "onnxruntime"
            exported = export_model(name, precisions=precisions, out_dir=tmp, images=images, check=on_ort,
                                    thresholds={p: thresholds_from(limits, p) for p in precisions},
                                    progress=progress, calib_data="samples" if "int8" in precisions else None)
            results += [r.check if on_ort else
                        check_artifact(r.path, images=images, backend=backend,
                                       thresholds=thresholds_from(limits, r.manifest["precision"]))
                        for r in exported]
    if junit:
        from .reports import write_junit

        write_junit(results, junit)
    if as_json:
        emit_json({"passed": all(r.passed for r in results), "results": [r.to_dict() for r in results]})
    else:
        from .reports import parity_table

        console.print(parity_table(results))
        for r in results:
            for failure in r.failures:
                console.print(f"[red]{r.artifact}: {failure}[/]", highlight=False)
        console.print(f"{sum(r.passed for r in results)} passed, {sum(not r.passed for r in results)} failed")
    if not all(r.passed for r in results):
        raise CheckFailed(f"{sum(not r.passed for r in results)} of {len(results)} artifacts failed parity")


def _artifact_precision(path: str) -> str:
    from .artifacts import read_manifest

    return read_manifest(path)["precision"]


@cli.command("bench")
@click.argument("target")
@click.option("--backends", default=None,
              help="Comma-separated: torch,torch-compile,torch-cudagraph,onnxruntime,openvino,tensorrt "
                   "(default: every backend, unusable ones listed with the reason).")
@click.option("--precision", default="fp32,fp16,bf16,int8", show_default=True, help="Comma-separated precisions.")
@click.option("--batch", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", type=int, default=None, help="CPU threads for every backend (default: all cores).")
@click.option("--warmup-ms", type=float, default=200, show_default=True, help="Time-based warm-up per case.")
@click.option("--duration", type=float, default=3.0, show_default=True, help="Minimum timed seconds per case.")
@click.option("--min-iters", type=int, default=10, show_default=True, help="Minimum timed iterations per case.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Device of the PyTorch backends.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Checkpoint to load (MODEL targets).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", default="export", show_default=True,
              help="Where ONNX artifacts are found or exported.")
@click.option("--calib-data", default="samples", show_default=True,
              help="Calibration data used if an int8 artifact must be exported.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write a CSV here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG plot (latency vs batch) here.")
def bench_cmd(target, backends, precision, batch, threads, warmup_ms, duration, min_iters, device, weights, seed,
              out_dir, calib_data, as_json, csv_path, plot_path) -> None:
    """Measure latency and throughput of MODEL (or one ARTIFACT) across backends, side by side."""
    from .bench_suite import BACKENDS, PRECISIONS, parse_list, run_bench
    from .reports import bench_table, write_bench_csv, write_bench_plot

    chosen = parse_list(backends, BACKENDS, "backend") if backends else None
    precisions = parse_list(precision, PRECISIONS, "precision")
    try:
        batches = tuple(int(b) for b in batch.split(",") if b.strip())
    except ValueError:
        raise UsageError(f"--batch must be comma-separated integers, got '{batch}'") from None
    if not batches or min(batches) < 1:
        raise UsageError(f"--batch needs positive sizes, got '{batch}'")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: no CUDA GPU is visible to PyTorch on this machine")
    export_kwargs = {"calib_data": calib_data} if "int8" in precisions else {}
    with StageProgress(not as_json) as progress:
        report = run_bench(target, backends=chosen, precisions=precisions, batches=batches, threads=threads,
                           warmup_ms=warmup_ms, duration_s=duration, min_iters=min_iters, device=device,
                           out_dir=out_dir, weights=weights, seed=seed, export_kwargs=export_kwargs,
                           progress=progress)
    if csv_path:
        write_bench_csv(report, csv_path)
    if plot_path:
        write_bench_plot(report, plot_path)
    if as_json:
        emit_json(report.to_dict())
        return
    from .machine import describe

    console.print(bench_table(report))
    console.print(f"machine: {describe(report.machine)}", highlight=False, markup=False)
    for case in report.cases:
        if case.status != "ok" and case.batch == batches[0]:
            console.print(f"not run: {case.backend} {case.precision}: {case.reason}", highlight=False, markup=False)
        elif case.latency and case.latency["unstable"]:
            console.print(f"warning: {case.backend} {case.precision} batch {case.batch}: latency CoV "
                          f"{case.latency['cov_pct']:.1f}% > 2.5%, the machine was busy or clocks varied",
                          highlight=False, markup=False)


# Commands kept in their own modules register themselves on `cli` when imported.
from . import cli_deploy, cli_tensorrt  # noqa: E402,F401


def main() -> None:
    sys.exit(cli.main(prog_name="cnnx", standalone_mode=True))


if __name__ == "__main__":
    main()
