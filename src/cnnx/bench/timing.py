"""Timing loop and statistics, reported the way trtexec reports them, over interleaved rounds.

- Warm-up is time-based (200 ms by default, at least one call); then a block of timed calls runs until both
  its minimum number of calls and its duration have passed.
- Rounds: `cnnx bench` times every case of a model in `rounds` blocks, interleaved with the other cases
  (A B C A B C ...), so that a noisy neighbour or a clock change shifts all cases alike. `duration_s` and
  `min_iters` are totals per case, split evenly over the rounds (each round: duration_s / rounds seconds and
  at least ceil(min_iters / rounds) calls). The first round starts with the warm-up; a later round whose
  calls are short (median < ROUND_SETTLE_MS) starts with ROUND_SETTLE_MS of untimed calls, which absorbs
  what the previous case left behind (its runtime's spinning worker threads, caches). The headline numbers
  are the median of the per-round medians and the median of the per-round throughputs.
- median: the middle value, or the mean of the two middle values for an even count.
- percentile(p) = sorted[max(N - 1 - int((1 - p/100) * N), 0)] in float32 (trtexec's sampleReporting rule).
- min/max/mean/median/percentiles/CoV are over all timed calls of all rounds, as trtexec reports them.
- CoV = std / mean * 100 (population std); above 2.5 % the run is flagged unstable, as trtexec does.
- throughput = batch * calls / wall-clock seconds of the timed blocks (images/s); qps = calls/s. With
  several concurrent callers (throughput mode) the calls overlap, so this is the served rate and each
  latency is one call's latency under that load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..backends.base import serial_calls

UNSTABLE_COV_PCT = 2.5
ROUND_SETTLE_MS = 50.0

# A block of timed calls: block(seconds, min_calls) -> (latency of each completed call in ms, wall seconds)
Block = Callable[[float, int], tuple[list[float], float]]


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
    round_medians_ms: tuple[float, ...] = ()  # per round, in the order the rounds ran
    round_images_per_s: tuple[float, ...] = ()

    @property
    def unstable(self) -> bool:
        return self.cov_pct > UNSTABLE_COV_PCT

    @property
    def rounds(self) -> int:
        return len(self.round_medians_ms) or 1

    @property
    def median_of_rounds_ms(self) -> float:
        """The headline latency: the median of the per-round medians (the overall median without rounds)."""
        return median(sorted(self.round_medians_ms)) if self.round_medians_ms else self.median_ms

    @property
    def images_per_s_of_rounds(self) -> float:
        """The headline throughput: the median of the per-round throughputs."""
        return median(sorted(self.round_images_per_s)) if self.round_images_per_s else self.images_per_s

    def to_dict(self) -> dict:
        return {**asdict(self), "unstable": self.unstable, "rounds": self.rounds,
                "median_of_rounds_ms": self.median_of_rounds_ms,
                "images_per_s_of_rounds": self.images_per_s_of_rounds}


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


def serial_block(step: Callable[[], float | None]) -> Block:
    """A block that calls `step` one call after another. `step` returns its own latency in ms (e.g. from CUDA
    events) or None, in which case the wall clock around the call is used (the right measure on CPU)."""
    return lambda seconds, min_calls: serial_calls(step, seconds, min_calls)


class RoundTimer:
    """One case, timed in `rounds` blocks that the caller interleaves with other cases' (see module doc)."""

    def __init__(self, block: Block, batch: int, warmup_ms: float = 200, duration_s: float = 3.0,
                 min_iters: int = 10, rounds: int = 1):
        if rounds < 1:
            raise ValueError("rounds must be at least 1")
        self.block, self.batch, self.warmup_ms = block, batch, warmup_ms
        self.round_s, self.round_calls = duration_s / rounds, max(1, math.ceil(min_iters / rounds))
        self.latencies: list[float] = []
        self.wall_s = 0.0
        self.round_medians: list[float] = []
        self.round_rates: list[float] = []

    def run_round(self) -> None:
        if not self.round_medians:  # first-call costs (allocation, compilation) are never measured
            self.block(self.warmup_ms / 1000, 1)
        elif self.round_medians[-1] < ROUND_SETTLE_MS:
            self.block(ROUND_SETTLE_MS / 1000, 1)
        latencies, wall = self.block(self.round_s, self.round_calls)
        self.latencies += latencies
        self.wall_s += wall
        self.round_medians.append(median(sorted(latencies)))
        self.round_rates.append(len(latencies) * self.batch / wall if wall > 0 else float("nan"))

    def stats(self) -> LatencyStats:
        return replace(summarize(self.latencies, self.batch, self.wall_s),
                       round_medians_ms=tuple(self.round_medians), round_images_per_s=tuple(self.round_rates))


def time_loop(step: Callable[[], float | None], batch: int, warmup_ms: float = 200, duration_s: float = 3.0,
              min_iters: int = 10, rounds: int = 1) -> LatencyStats:
    """Time `step` alone (no other case interleaved): warm-up, then `rounds` blocks back to back."""
    timer = RoundTimer(serial_block(step), batch, warmup_ms, duration_s, min_iters, rounds)
    for _ in range(rounds):
        timer.run_round()
    return timer.stats()
