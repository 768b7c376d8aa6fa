"""`cnnx bench`: latency and throughput across backends, side by side."""

from __future__ import annotations

import click

from ..artifacts import prepare_output_file
from ..backends import MODES
from ..backends import names as backend_names
from ..errors import BackendUnavailable
from ..precisions import PRECISIONS
from .common import (
    SEED,
    StageProgress,
    console,
    emit_json,
    json_option,
    parse_batches,
    parse_list,
    pretrained_option,
    say,
)


@click.command("bench")
@click.argument("target")
@click.option("--backends", default=None,
              help=f"Comma-separated: {','.join(backend_names())} "
                   "(default: every backend, unusable ones listed with the reason).")
@click.option("--precision", default=",".join(PRECISIONS), show_default=True, help="Comma-separated precisions.")
@click.option("--batch", default="1,8,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for every backend (default: all cores).")
@click.option("--mode", "mode", default="latency", show_default=True,
              help="latency (one caller), throughput (the backend's concurrent callers, images/s), or both: "
                   "latency,throughput.")
@click.option("--warmup-ms", type=click.FloatRange(0), default=200, show_default=True,
              help="Time-based warm-up per case.")
@click.option("--duration", type=click.FloatRange(0), default=3.0, show_default=True,
              help="Minimum timed seconds per case, in total over its rounds.")
@click.option("--min-iters", type=click.IntRange(1), default=10, show_default=True,
              help="Minimum timed iterations per case, in total over its rounds.")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
              help="Rounds: the cases run interleaved, each once per round; medians of the round medians are reported.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Device of the PyTorch backends.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Checkpoint to load (MODEL targets).")
@pretrained_option
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the initialisation without --weights or --pretrained.")
@click.option("--out", "out_dir", default="export", show_default=True,
              help="Where ONNX artifacts are found or exported.")
@click.option("--calib-data", default="samples", show_default=True,
              help="Calibration data used if an int8 artifact must be exported.")
@json_option
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Also write a CSV here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Also write a PNG plot (latency vs batch) here.")
def bench_cmd(target, backends, precision, batch, threads, mode, warmup_ms, duration, min_iters, rounds, device,
              weights, pretrained, seed, out_dir, calib_data, as_json, csv_path, plot_path) -> None:
    """Measure latency and throughput of MODEL (or one ARTIFACT) across backends, side by side."""
    from ..bench.suite import run_bench
    from ..hardware import describe
    from .render import bench_table, write_bench_csv, write_bench_plot

    chosen = parse_list(backends, backend_names(), "backend") if backends else None
    precisions = parse_list(precision.lower(), tuple(PRECISIONS), "precision")
    modes = parse_list(mode.lower(), MODES, "mode")
    batches = parse_batches(batch)
    for path, option in ((csv_path, "--csv"), (plot_path, "--plot")):
        if path:
            prepare_output_file(path, option)
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda: no CUDA GPU is visible to PyTorch on this machine")
    export_kwargs = {"calib_data": calib_data} if "int8" in precisions else {}
    with StageProgress(not as_json) as progress:
        report = run_bench(target, backends=chosen, precisions=precisions, batches=batches, threads=threads,
                           warmup_ms=warmup_ms, duration_s=duration, min_iters=min_iters, rounds=rounds,
                           modes=modes, device=device,
                           out_dir=out_dir, weights=weights, pretrained=pretrained, seed=seed,
                           export_kwargs=export_kwargs,
                           progress=progress)
    if csv_path:
        write_bench_csv(report, csv_path)
    if plot_path:
        write_bench_plot(report, plot_path)
    if as_json:
        emit_json(report.to_dict())
        return
    console.print(bench_table(report))
    say(f"machine: {describe(report.machine)}")
    reported = set()
    for case in report.cases:
        if case.status != "ok" and (case.backend, case.precision, case.reason) not in reported:
            reported.add((case.backend, case.precision, case.reason))
            say(f"not run: {case.backend} {case.precision}: {case.reason}")
        elif case.latency and case.latency["unstable"]:
            say(f"warning: {case.backend} {case.precision} batch {case.batch} {case.mode}: latency CoV "
                f"{case.latency['cov_pct']:.1f}% > 2.5%, the machine was busy or clocks varied")
