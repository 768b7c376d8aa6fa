"""Calibration method "mse": per tensor, the clipping range with the least quantization error.

For each calibrated tensor, a histogram of |x| over all calibration tensors (ONNX Runtime's percentile
calibrator collects it: HISTOGRAM_BINS bins, more as larger values arrive) and, among the bin edges T, the one
that minimises the expected squared error of int8 quantization with the range [-T, T] (or [0, T]): values above
T are clipped to T, values below it are rounded to the step T / levels (error step^2 / 12, or x^2 where x rounds
to zero, which keeps a ReLU's spike of zeros from counting as rounding noise). NVIDIA's PyTorch quantizers
offer the same search (pytorch-quantization's HistogramCalibrator, `compute_amax("mse")`); their ONNX quantizer,
ModelOpt's, offers only max and entropy.

Why cnnx has it: ONNX Runtime's "entropy" with its default 128 bins only clips through the way its histograms
grow batch by batch (with one batch it never clips), so its ranges depend on the calibration batch order.
On seeded zoo networks MSE ranges are 0.7-1.7 dB closer to fp32 than minmax's on held-out photos, and ahead of
ORT's entropy (docs/results/int8-vs-modelopt.md); on the trained digits network minmax keeps outliers that matter
(mse: -1.4 dB), which is why minmax stays the default and `--calib-method auto` judges both on tensors held out
of their calibration.
"""

from __future__ import annotations

import numpy as np

HISTOGRAM_BINS = 2048


def mse_threshold(hist: np.ndarray, edges: np.ndarray, levels: int) -> float:
    """The upper bin edge T of a |x| histogram that minimises the quantization error with `levels` steps in [0, T]."""
    counts = hist.astype(np.float64)
    centres = (edges[:-1].astype(np.float64) + edges[1:]) / 2
    candidates = edges[1:].astype(np.float64)  # T = the upper edge of bin k; bins above k are clipped
    zero = np.zeros(1)
    # Prefix sums (index i: bins below i) of n, n*x and n*x^2, for the clipped tail and the rounded-to-zero head.
    n = np.concatenate([zero, np.cumsum(counts)])
    nx = np.concatenate([zero, np.cumsum(counts * centres)])
    nx2 = np.concatenate([zero, np.cumsum(counts * centres ** 2)])
    inside = np.arange(1, len(counts) + 1)  # bins 0..k lie inside [0, T]
    step = candidates / levels
    to_zero = np.minimum(np.searchsorted(centres, step / 2), inside)  # inside bins that round to 0
    rounding = nx2[to_zero] + (n[inside] - n[to_zero]) * step ** 2 / 12
    clipping = (nx2[-1] - nx2[inside]) - 2 * candidates * (nx[-1] - nx[inside]) + candidates ** 2 * (n[-1] - n[inside])
    return float(candidates[int(np.argmin(rounding + clipping))])


def mse_ranges(histograms: dict, symmetric: bool):
    """ONNX Runtime's TensorsData of the MSE ranges, from its percentile collector's |x| histograms
    ({name: (hist, edges, min, max)}). Symmetric (int8, zero point 0): T is chosen for 127 steps up to T on
    either side. Asymmetric (uint8): for 255 steps over [0, T] on non-negative tensors; on signed ones T is
    chosen as for int8 and the range written is [max(min, -T), min(max, T)], which can be narrower on one side
    than the error model assumed (finer steps: T may clip a little more than the least error needs)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    ranges = {}
    for name, (hist, edges, lowest, highest) in histograms.items():
        non_negative = lowest >= 0
        levels = 255 if non_negative and not symmetric else 127
        t = mse_threshold(hist, edges, levels)
        low = 0.0 if non_negative else max(float(lowest), -t)
        ranges[name] = TensorData(lowest=np.float32(low), highest=np.float32(min(float(highest), t)))
    return TensorsData(CalibrationMethod.Percentile, ranges)
