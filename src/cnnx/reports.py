"""Rendering results for people (rich tables) and for CI systems (JUnit XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from rich.table import Table

from .artifacts import atomic_path
from .verify import CheckResult


def parity_table(results: list[CheckResult], title: str = "parity against eager PyTorch fp32") -> Table:
    table = Table(title=title)
    for column in ("artifact", "precision", "max_rel", "cosine", "SQNR dB", "top-1", "top-5", "verdict"):
        table.add_column(column, justify="left" if column in ("artifact", "precision", "verdict") else "right")
    for r in results:
        m = r.metrics
        verdict = "[green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
        table.add_row(Path(r.artifact).name, r.precision, f"{m['max_rel']:.2e}", f"{m['cosine']:.6f}",
                      f"{m['sqnr_db']:.1f}", f"{m['top1']:.2f}", f"{m['top5']:.2f}", verdict)
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
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in r.metrics.items())
        if not r.passed:
            failure = ET.SubElement(case, "failure", message="; ".join(r.failures))
            failure.text = f"{r.precision} artifact on {r.backend}: {metrics}"
        ET.SubElement(case, "system-out").text = metrics
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
