"""Draw the results pages' plots from the results they show: no measurement of its own.

    python scripts/results_plots.py    # docs/results/parity.png and docs/results/accuracy.png

parity.png: logit SQNR against eager PyTorch per zoo model, fp32 and fp16 from docs/results/parity.json, int8
(TensorRT form, after the rescue) from the table of docs/results/int8.md. accuracy.png: the top-1 each artifact
of the trained network keeps (the Accuracy table of docs/results/trained.md), per runtime.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from docs_blocks import DOCS  # noqa: E402  (scripts/ is on sys.path when a script runs)

RESULTS = DOCS / "results"


def markdown_table(text: str, first_headers: str) -> list[dict[str, str]]:
    """The rows of the first markdown table whose header row starts with `| first_headers |`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_headers} |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))))
    return rows


def parity_plot() -> None:
    parity = json.loads((RESULTS / "parity.json").read_text())
    int8 = {r["model"]: float(r["SQNR after (dB)"]) for r in markdown_table((RESULTS / "int8.md").read_text(), "model")}
    models = list(dict.fromkeys(r["model"] for r in parity))
    sqnr = {(r["model"], r["precision"]): min(r["sqnr_db"], 140.0) for r in parity}
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.27
    for k, (precision, values) in enumerate((("fp32", [sqnr[m, "fp32"] for m in models]),
                                             ("fp16", [sqnr[m, "fp16"] for m in models]),
                                             ("int8 (TensorRT form)", [int8.get(m, 0.0) for m in models]))):
        ax.bar([i + (k - 1) * width for i in range(len(models))], values, width, label=precision)
    for gate, style in ((60, ":"), (30, "--"), (10, "-.")):
        ax.axhline(gate, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("logit SQNR vs eager fp32 (dB)")
    ax.set_title("Parity per precision (seeded weights; gates: fp32 60 dB, fp16 30 dB, int8 10 dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "parity.png", dpi=110)


def accuracy_plot() -> None:
    rows = markdown_table((RESULTS / "trained.md").read_text(), "artifact | backend")
    rows = [r for r in rows if not r["artifact"].startswith("broken")]
    labels = ["\n".join([*r["artifact"].split(", "), r["backend"]]) for r in rows]  # short lines: no overlap
    fig, ax = plt.subplots(figsize=(12, 4.4))
    ax.bar(range(len(rows)), [100 * float(r["retained (>= 0.99)"]) for r in rows], color="tab:green")
    ax.axhline(99, color="grey", linestyle="--", linewidth=0.8)
    ax.set_ylim(95, 101)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("top-1 kept vs eager fp32 (%)")
    ax.set_title("Trained ResNet-18 on 1000 held-out digits (cnnx eval; the line: eval's 99 % rule)")
    fig.tight_layout()
    fig.savefig(RESULTS / "accuracy.png", dpi=110)


if __name__ == "__main__":
    parity_plot()
    accuracy_plot()
    print(f"wrote {RESULTS / 'parity.png'} and {RESULTS / 'accuracy.png'}")
