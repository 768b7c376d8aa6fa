"""Rendering results for people (rich tables), for scripts (JSON) and for CI systems (JUnit XML, CSV, plots)."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from ..artifacts import atomic_path
from ..errors import BackendUnavailable
from .common import console, emit_json, say

if TYPE_CHECKING:
    from ..reference import CheckResult


def _number(value, spec: str) -> str:
    """A metric for people; None (an output with NaN/Inf has no cosine or SQNR) reads 'n/a'."""
    return "n/a" if value is None else format(value, spec)


def parity_table(results: list[CheckResult], title: str = "parity against eager PyTorch fp32") -> Table:
    table = Table(title=title)
    for column in ("artifact", "precision", "max_rel", "cosine", "SQNR dB", "top-1", "top-5", "verdict"):
        table.add_column(column, justify="left" if column in ("artifact", "precision", "verdict") else "right")
    for r in results:
        m = r.metrics
        verdict = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(escape(Path(r.artifact).name), r.precision, _number(m["max_rel"], ".2e"),
                      _number(m["cosine"], ".6f"), _number(m["sqnr_db"], ".1f"), f"{m['top1']:.2f}",
                      f"{m['top5']:.2f}", verdict)
    return table


def write_junit(results: list[CheckResult], path: str | Path) -> None:
    """One test case per artifact, so CI systems show per-model parity results."""
    failures = sum(not r.passed for r in results)
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name="cnnx check", tests=str(len(results)), failures=str(failures),
                       errors="0", time=f"{sum(r.seconds for r in results):.2f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"cnnx.{r.model}", name=Path(r.artifact).name,
                             time=f"{r.seconds:.2f}")
        metrics = ", ".join(f"{k}={_number(v, '.6g')}" for k, v in r.metrics.items())
        if not r.passed:
            failure = ET.SubElement(case, "failure", message="; ".join(r.failures))
            failure.text = f"{r.precision} artifact on {r.backend}: {metrics}"
        ET.SubElement(case, "system-out").text = metrics
    with atomic_path(Path(path), option="--junit") as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)


def render_exports(results, as_json: bool) -> None:
    """`cnnx export`'s output: the artifacts, their parity, and what happened about TensorRT engines."""
    engines = [r.engine for r in results if r.engine is not None]
    if as_json:
        emit_json({"artifacts": [{"path": str(r.path), "manifest": r.manifest.to_dict()} for r in results],
                   "tensorrt": [e.to_dict() for e in engines]})
        return
    table = Table(title="artifacts")
    for column in ("file", "precision", "size", "nodes", "kept in float", "parity"):
        table.add_column(column, justify="right" if column in ("size", "nodes", "kept in float") else "left")
    for r in results:
        m = r.manifest
        details = m.precision_details
        kept = details.get("fp32_node_count", details.get("float_layers", {}).get("count", "-"))
        verdict = {True: "[green]PASS[/]", False: "[bold red]FAIL[/]", None: "not checked"}[r.passed]
        table.add_row(escape(str(r.path)), m.precision, f"{m.artifact_bytes / 2**20:.1f} MiB",
                      f"{m.nodes['exported']} -> {m.nodes['artifact']}", str(kept), verdict)
    console.print(table)
    checked = [r.check for r in results if r.check is not None]
    if checked:
        console.print(parity_table(checked))
        for check in checked:
            for failure in check.failures:
                say(f"{check.artifact}: {failure}", style="red")
    for engine in engines:
        if engine.built:
            say(f"TensorRT engine: {engine.plan}")
        elif engine.command:
            say(f"TensorRT engine: not built: {engine.reason}. On a machine with an NVIDIA GPU and TensorRT run: "
                f"{engine.command}")
            break  # the reason is the same for every artifact
    weights = results[0].manifest.weights if results else {}
    if weights.get("source") == "pretrained":
        say(f"weights: {weights['publisher']} {weights['name']} ({weights['file_name']}, sha256 {weights['sha256']})")
    say(f"next: {shlex.join(['cnnx', 'check', *(str(r.path) for r in results)])}")
    if results:
        say(stage_times(results[-1].manifest.timings_s))


def stage_times(timings: dict[str, float]) -> str:
    """Where an export's time went, largest stage first (the last manifest holds every stage's time)."""
    stages = sorted(timings.items(), key=lambda kv: -kv[1])
    return (f"time: {sum(timings.values()):.1f} s: "
            + ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in stages))


def bench_table(report) -> Table:
    """One row per case. median ms: the median of the per-round medians; p90/p99/mean/CoV: over every timed
    call; images/s: the median of the per-round throughputs. Throughput-mode rows time `callers` concurrent
    calls: their latencies are per call under that load."""
    gpu = report.device != "cpu"
    modes = {c.mode for c in report.cases}
    rounds = report.settings.get("rounds", 1)
    table = Table(title=f"{report.model} on {report.device}" + (f", {report.threads} threads" if report.threads else "")
                  + (f", {rounds} interleaved rounds" if rounds > 1 else ""))
    columns = (["backend", "precision", "batch"] + (["mode", "callers"] if modes != {"latency"} else [])
               + ["median ms", "p90 ms", "p99 ms", "mean ms", "CoV %", "images/s", "speedup"]
               + (["end-to-end median ms"] if gpu else []))
    for column in columns:
        table.add_column(column, justify="left" if column in ("backend", "precision", "mode") else "right")
    for c in report.cases:
        if c.status != "ok":
            continue
        s = c.latency
        row = [c.backend, c.precision, str(c.batch)] + ([c.mode, str(c.callers)] if modes != {"latency"} else [])
        row += [f"{s['median_of_rounds_ms']:.2f}", f"{s['p90_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['mean_ms']:.2f}",
                f"{s['cov_pct']:.1f}", f"{s['images_per_s_of_rounds']:.1f}", f"{c.speedup:.2f}x" if c.speedup else "-"]
        if gpu:
            row.append(f"{c.end_to_end['median_of_rounds_ms']:.2f}" if c.end_to_end else "-")
        table.add_row(*row)
    return table


# New columns are appended, so readers of older files keep working: median_ms stays the median over every
# timed call; median_of_rounds_ms / images_per_s_of_rounds are the headline numbers of interleaved rounds.
CSV_FIELDS = ("model", "device", "threads", "backend", "precision", "batch", "status", "reason", "iterations",
              "min_ms", "max_ms", "mean_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "cov_pct", "qps",
              "images_per_s", "speedup", "e2e_median_ms", "mode", "callers", "rounds", "median_of_rounds_ms",
              "images_per_s_of_rounds")


def bench_rows(report) -> list[dict]:
    rows = []
    for c in report.cases:
        row = {"model": report.model, "device": report.device, "threads": report.threads, "backend": c.backend,
               "precision": c.precision, "batch": c.batch, "status": c.status, "reason": c.reason,
               "speedup": c.speedup, "e2e_median_ms": c.end_to_end["median_of_rounds_ms"] if c.end_to_end else None,
               "mode": c.mode, "callers": c.callers}
        row.update({k: v for k, v in (c.latency or {}).items() if k in CSV_FIELDS})
        rows.append(row)
    return rows


def write_bench_csv(report, path: str | Path) -> None:
    import csv

    with atomic_path(Path(path), option="--csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(bench_rows(report))


def write_bench_plot(report, path: str | Path) -> None:
    """Median latency vs batch, one line per backend/precision (log-log)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailable("--plot needs matplotlib", "pip install matplotlib") from None
    lines: dict[str, list[tuple[int, float]]] = {}
    for c in report.cases:
        if c.status == "ok":
            label = f"{c.backend} {c.precision}" + (f" throughput x{c.callers}" if c.mode == "throughput" else "")
            lines.setdefault(label, []).append((c.batch, c.latency["median_of_rounds_ms"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(lines.items()):
        points.sort()
        ax.plot([b for b, _ in points], [ms for _, ms in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    batches = sorted({b for points in lines.values() for b, _ in points})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(f"{report.model}, {report.device}" + (f", {report.threads} threads" if report.threads else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path), option="--plot") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _percent(value, signed: bool = False) -> str:
    return "-" if value is None else format(100 * value, "+.2f" if signed else ".2f")


def render_eval(report, as_json: bool, show_changed: int) -> None:
    """`cnnx eval`'s output: accuracy per row with deltas and verdicts, unreadable images, changed images."""
    from .common import err_console

    for bad in report.unreadable:  # on stderr, also with --json (which lists them too)
        err_console.print(f"unreadable image: {bad['error']}", style="yellow", markup=False, highlight=False,
                          soft_wrap=True)
    if as_json:
        emit_json(report.to_dict())
        return
    table = Table(title=f"accuracy on {report.images} labeled images of {report.data} ({report.layout})")
    for column in ("artifact", "precision", "backend", "top-1 %", "top-5 %", "Δ top-1", "Δ top-5", "retained",
                   "SQNR dB", "top-1 changed", "verdict"):
        left = column in ("artifact", "precision", "backend", "verdict")
        table.add_column(column, justify="left" if left else "right")
    for row in report.rows:
        if row.reference is None:
            verdict = "reference" if any(r.reference == row.name for r in report.rows) else "-"
        else:
            verdict = {True: "[green]PASS[/]", False: "[bold red]FAIL[/]", None: "-"}[row.passed]
        changed = "-" if row.reference is None else f"{row.changed} (-{row.became_wrong} +{row.became_right})"
        table.add_row(escape(row.name), row.precision, row.backend, _percent(row.top1), _percent(row.top5),
                      _percent(row.delta_top1, True), _percent(row.delta_top5, True),
                      "-" if row.retained is None else f"{row.retained:.4f}", _number(row.sqnr_db, ".1f")
                      if row.reference else "-", changed, verdict)
    console.print(table)
    for row in report.rows:
        for change in row.changed_images[:show_changed]:
            say(f"{row.name}: {change['image']} (label {change['label']}): top-1 {change['reference']} -> "
                f"{change['top1']}", style="dim")
        if len(row.changed_images) > show_changed > 0:
            say(f"{row.name}: ... {len(row.changed_images) - show_changed} more changed images (--json lists all)",
                style="dim")
    notes = [f"{len(report.unreadable)} unreadable images left out"] if report.unreadable else []
    if report.unmatched_entries:
        notes.append(f"{report.unmatched_entries} labels-file rows name no image in the folder (ignored)")
    judged = [row for row in report.rows if row.passed is not None]
    summary = (f"{sum(r.passed for r in judged)} of {len(judged)} keep >= {report.min_retained:g} of the fp32 top-1"
               if judged else "no fp32 reference (an fp32 artifact or --model) to judge against")
    say("; ".join([summary, *notes]) + f" ({report.seconds:.1f} s)")
