"""Numerical parity between a reference output (eager PyTorch fp32) and an artifact's output.

Metrics (over all samples of a batch of logits, shape N x C):
- max_abs: largest absolute difference.
- max_rel: max_abs divided by the largest |reference| value, i.e. the error relative to the output's
  range (elementwise relative error is meaningless for logits near zero).
- cosine: the lowest per-sample cosine similarity.
- sqnr_db: 10*log10(sum ref^2 / sum (ref-out)^2), signal-to-quantisation-noise ratio, capped at
  SQNR_CAP_DB (identical outputs), so reports stay plain JSON numbers.
- top1: fraction of samples whose argmax agrees; top5: mean overlap of the two top-5 sets.
- nonfinite: count of NaN/Inf values in the artifact's output. When there are any, the metrics that compare
  values (max_abs, max_rel, cosine, sqnr_db) are None: no number describes an output that is not a number,
  and a finite stand-in would make a broken artifact look close. top-1/top-5 treat NaN/Inf as the lowest value.
"""

from __future__ import annotations

import numpy as np

from .precisions import PRECISIONS, Thresholds

SQNR_CAP_DB = 200.0


# The default gate of each precision lives in its registry entry (precisions.py), with its evidence.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {name: p.gate for name, p in PRECISIONS.items() if p.gate}


def compare(reference: np.ndarray, output: np.ndarray) -> dict[str, float | None]:
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(output, np.float64).reshape(len(output), -1)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from reference shape {ref.shape}")
    nonfinite = int((~np.isfinite(out)).sum())
    k = min(5, ref.shape[1])
    ranked = np.where(np.isfinite(out), out, -np.inf)
    top_ref, top_out = np.argsort(-ref, axis=1)[:, :k], np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    agreement = {"top1": float(np.mean(top_ref[:, 0] == top_out[:, 0])),
                 "top5": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_ref, top_out)])),
                 "nonfinite": nonfinite}
    if nonfinite:
        return {"max_abs": None, "max_rel": None, "cosine": None, "sqnr_db": None, **agreement}
    diff = ref - out
    max_abs = float(np.abs(diff).max())
    scale = float(np.abs(ref).max()) or 1.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosines = np.where(norms > 0, (ref * out).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
    sqnr = sqnr_db(float((ref ** 2).sum()), float((diff ** 2).sum()))
    return {"max_abs": max_abs, "max_rel": max_abs / scale, "cosine": float(cosines.min()), "sqnr_db": sqnr,
            **agreement}


def sqnr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise) from the summed squares of the reference and of the difference, capped."""
    if noise == 0:
        return SQNR_CAP_DB
    return min(SQNR_CAP_DB, float(10 * np.log10(signal / noise))) if signal else 0.0


def judge(metrics: dict[str, float | None], limits: Thresholds) -> list[str]:
    """The reasons a result fails its thresholds (empty list: it passes)."""
    failures = []
    if metrics["nonfinite"]:
        failures.append(f"{metrics['nonfinite']} NaN/Inf values in the output")
    checks = (("max_rel", limits.max_rel, "<="), ("cosine", limits.min_cosine, ">="),
              ("sqnr_db", limits.min_sqnr_db, ">="), ("top1", limits.min_top1, ">="),
              ("top5", limits.min_top5, ">="))
    for name, limit, op in checks:
        value = metrics[name]
        if limit is None or value is None:  # None: not a number because of NaN/Inf, already a failure above
            continue
        ok = value <= limit if op == "<=" else value >= limit
        if not ok:
            failures.append(f"{name} = {value:.6g}, needs {op} {limit:g}")
    return failures
