"""Calibration method "mse" (src/cnnx/export/mse_ranges.py): the clipping edge it picks from a histogram is the one
that quantizes the values themselves with the least error, judged by quantizing the values, not the histogram."""

import numpy as np
import pytest

from cnnx.export.mse_ranges import HISTOGRAM_BINS, mse_ranges, mse_threshold
from cnnx.export.qdq_forms import symmetric_fake_quant


def quantization_mse(values: np.ndarray, peak: float, levels: int = 127) -> float:
    return float(((values - symmetric_fake_quant(values, peak, levels)) ** 2).mean())


def threshold_of(values: np.ndarray, levels: int = 127) -> float:
    hist, edges = np.histogram(np.abs(values), bins=HISTOGRAM_BINS)
    return mse_threshold(hist, edges.astype(np.float32), levels)


@pytest.mark.parametrize("name", ["normal", "laplace", "relu"])
def test_the_chosen_clip_beats_the_maximum_and_its_neighbours(name):
    """Long-tailed activations (a normal's, a Laplace's, a ReLU's: half zeros): the chosen edge clips well below the
    largest value and quantizes the values with less error than the maximum or an edge 15 % either side."""
    rng = np.random.default_rng(0)
    values = {"normal": rng.normal(size=400_000), "laplace": rng.laplace(size=400_000),
              "relu": np.maximum(rng.normal(size=400_000), 0)}[name].astype(np.float32)
    t, peak = threshold_of(values), float(np.abs(values).max())
    assert t < 0.9 * peak, (t, peak)
    best = quantization_mse(values, t)
    assert best < quantization_mse(values, peak)
    assert best < quantization_mse(values, 0.85 * t) and best < quantization_mse(values, 1.15 * t)


def test_without_outliers_nothing_is_clipped():
    """Uniform values: clipping only adds error, so the range is (nearly) the maximum."""
    values = np.random.default_rng(1).uniform(-3, 3, size=200_000).astype(np.float32)
    assert threshold_of(values) >= 0.99 * float(np.abs(values).max())


def test_ranges_by_sign_and_form():
    """A non-negative tensor gets [0, T]; a signed one [-T, T] within its own extremes; the uint8 (asymmetric) form
    spends 255 steps on a non-negative range, so it clips less than the int8 form does."""
    rng = np.random.default_rng(2)
    relu = np.maximum(rng.normal(size=200_000), 0).astype(np.float32)
    signed = rng.normal(size=200_000).astype(np.float32)
    histograms = {}
    for name, values in (("relu", relu), ("signed", signed)):
        hist, edges = np.histogram(np.abs(values), bins=HISTOGRAM_BINS)
        histograms[name] = (hist, edges.astype(np.float32), values.min(), values.max())
    symmetric, asymmetric = mse_ranges(histograms, True), mse_ranges(histograms, False)
    assert symmetric["relu"].range_value[0] == 0 and 0 < symmetric["relu"].range_value[1] < relu.max()
    low, high = symmetric["signed"].range_value
    assert signed.min() <= low < 0 < high <= signed.max() and -low == pytest.approx(high, rel=0.01)
    assert asymmetric["relu"].range_value[1] > symmetric["relu"].range_value[1]
