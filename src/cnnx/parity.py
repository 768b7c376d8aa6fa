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

from dataclasses import asdict, dataclass

import numpy as np

SQNR_CAP_DB = 200.0


@dataclass(frozen=True)
class Thresholds:
    """Pass limits for one precision. None means the metric is reported but not judged."""

    max_rel: float | None = None
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_top1: float | None = None
    min_top5: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Set from docs/results/parity.md (scripts/parity_matrix.py: every zoo model, seeded weights, 10 photos + 2 random
# inputs). fp32 artifacts differ from eager by float rounding only (worst max_rel 9.1e-6, SQNR >= 94 dB), so
# fp32 is judged strictly. fp16 keeps ~3 decimal digits; deep seeded ResNets amplify its rounding (worst:
# resnet152 SQNR 38.8 dB, cosine 0.994, top-1 0.77, top-5 0.88), while a broken conversion (overflow, LRN
# in fp16) gives NaN or cosine far below 0.9. So fp16 is judged by direction, noise level and top-5.
# int8 (held-out images only), from docs/results/int8.md (seeded zoo) and docs/results/trained.md (a resnet18 trained
# on real digits, tests/test_trained.py): healthy artifacts range from 11.9 dB / cosine 0.965 (seeded inception-v3:
# deep random networks amplify quantization noise) to 37-40 dB / 0.9998 (trained, keeping 100 % of its top-1); the
# mildest broken quantization, every activation range clipped to 1/2, gives 7.0 dB / cosine 0.40 and already loses 2.8
# % of the top-1 (clipped to 1/10: -0.1 dB; an outlier-stretched range: 2.9 dB, tests/test_int8.py). 10 dB and 0.95
# sit between the two, so the default gate fails broken artifacts and passes healthy ones; accuracy itself is `cnnx
# eval`'s verdict, and --min-sqnr tightens the gate for trained weights.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(max_rel=1e-4, min_cosine=0.99999, min_sqnr_db=60.0, min_top1=1.0, min_top5=1.0),
    "fp16": Thresholds(min_cosine=0.99, min_sqnr_db=30.0, min_top1=0.5, min_top5=0.8),
    "int8": Thresholds(min_cosine=0.95, min_sqnr_db=10.0, min_top5=0.6),
}


def compare(reference: np.ndarray, output: np.ndarray) -> dict[str, float]:
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


def judge(metrics: dict[str, float], limits: Thresholds) -> list[str]:
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
