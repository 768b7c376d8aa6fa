"""Timing loop and statistics, reported the way trtexec reports them.

- Warm-up is time-based (200 ms by default); then the loop runs until both `min_iters` iterations and
  `duration` seconds have passed.
- median: the middle value, or the mean of the two middle values for an even count.
- percentile(p) = sorted[max(N - 1 - int((1 - p/100) * N), 0)] in float32 (trtexec's sampleReporting rule).
- CoV = std / mean * 100 (population std); above 2.5 % the run is flagged unstable, as trtexec does.
- throughput = batch * iterations / wall-clock seconds of the timed loop (images/s); qps = queries/s.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

UNSTABLE_COV_PCT = 2.5
PERCENTILES = (90, 95, 99)


def trtexec_percentile(sorted_values: list[float], p: float) -> float:
    """trtexec computes the excluded count in float32; float64 would differ (p90 of 100 values: 10.0000024
    truncates to 10 in float32, but 9.999999999999998 truncates to 9 in float64)."""
    n = len(sorted_values)
    excluded = int((np.float32(1) - np.float32(p) / np.float32(100)) * np.float32(n))
    return sorted_values[max(n - 1 - excluded, 0)]


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


@dataclass(frozen=True)
class LatencyStats:
    iterations: int
    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    cov_pct: float
    qps: float
    images_per_s: float

    @property
    def unstable(self) -> bool:
        return self.cov_pct > UNSTABLE_COV_PCT

    def to_dict(self) -> dict:
        return {**asdict(self), "unstable": self.unstable}


def summarize(latencies_ms: list[float], batch: int, wall_s: float) -> LatencyStats:
    if not latencies_ms:
        raise ValueError("no timed iterations")
    values = sorted(latencies_ms)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    qps = n / wall_s if wall_s > 0 else float("nan")
    return LatencyStats(
        iterations=n, min_ms=values[0], max_ms=values[-1], mean_ms=mean, median_ms=median(values),
        p90_ms=trtexec_percentile(values, 90), p95_ms=trtexec_percentile(values, 95),
        p99_ms=trtexec_percentile(values, 99), cov_pct=(std / mean * 100) if mean else 0.0,
        qps=qps, images_per_s=qps * batch,
    )


def time_loop(step: Callable[[], float | None], batch: int, warmup_ms: float = 200, duration_s: float = 3.0,
              min_iters: int = 10) -> LatencyStats:
    """Time `step` repeatedly. `step` returns its own latency in ms (e.g. from CUDA events) or None, in
    which case the wall clock around the call is used (the right measure on CPU)."""
    end_warmup = time.perf_counter() + warmup_ms / 1000
    step()  # at least one warm-up call: first-call costs (allocation, compilation) are not measured
    while time.perf_counter() < end_warmup:
        step()
    latencies = []
    start = time.perf_counter()
    while len(latencies) < min_iters or time.perf_counter() - start < duration_s:
        t0 = time.perf_counter()
        own = step()
        latencies.append(own if own is not None else (time.perf_counter() - t0) * 1000)
    return summarize(latencies, batch, time.perf_counter() - start)
