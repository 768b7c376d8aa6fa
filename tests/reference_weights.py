"""Deterministic synthetic weights and inputs for the reference-checkpoint tests.

The same code runs in two places: in the reference environment (torch + torchvision + timm), where
`scripts/make_reference_fixtures.py` loads these weights into the torchvision/timm models and records
their logits, and in CI (torch only), where `tests/test_reference_checkpoints.py` loads the very same
weights into cnnx's models and compares. So it must give the same numbers under any torch version and on
any CPU:

* every tensor has its own generator, seeded with ``seed + zlib.crc32(key)``: a tensor's values depend
  only on its key, its shape and the seed, never on which other keys exist or on their order;
* values are drawn in float64 and then rounded to float32. torch's float32 ``normal_`` takes a
  vectorised path whose last bits can depend on the CPU's instruction set; the float64 path is plain
  scalar code, so the float32 result is the same everywhere.

The scales keep deep networks tame in eval mode and, as important, keep the logits sensitive to every
layer, so that a wrong layer anywhere shows up well above the test tolerance:

* conv weights (>2 dims): ``randn * sqrt(2 / fan_in)`` (He); linear weights: ``randn * sqrt(1 / fan_in)``;
  ``fan_in = numel / shape[0]``. With ``sqrt(1/fan_in)`` for convs too, each conv+BN+ReLU stage shrinks
  the signal by ~0.5, and in deep non-residual nets the input is washed out of the logits: for
  torchvision's inception_v3 the logits of two different random inputs then differ by ~1e-6 (below any
  usable tolerance), so the test could not see a wrong stem. With He scaling they differ by ~5e-4 and
  the input's part of the logits is ~100x larger; ResNet-152's logits grow to ~5e3, harmless in float32.
* biases (no norm statistics beside them): ``randn * 0.01``;
* BatchNorm: weight ``U(0.5, 1.0)``, bias ``randn * 0.1``, running_mean ``randn * 0.1``, running_var
  ``U(0.5, 1.5)``, num_batches_tracked int64 scalar 0. 1-d weights of norm layers without running
  statistics (LayerNorm/GroupNorm) are drawn like BN weights, their biases like BN biases.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import torch

__all__ = ["synthetic_state_dict", "reference_input", "tensor_kind", "fingerprint"]

_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(int(seed))


def _randn(shape: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64)


def _uniform(shape: Sequence[int], low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=torch.float64).uniform_(low, high, generator=gen)


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def tensor_kind(key: str, shape: Sequence[int], keys: Mapping[str, object]) -> str:
    """Classify a state-dict entry from its key, its shape and its sibling keys.

    One of: ``num_batches_tracked``, ``bn_mean``, ``bn_var``, ``bn_weight``, ``bn_bias`` (a norm layer
    that has running statistics), ``norm_weight``/``norm_bias`` (a 1-d weight without running statistics,
    e.g. LayerNorm/GroupNorm), ``weight`` (conv/linear, >= 2 dims), ``bias``, ``other``.
    """
    prefix, leaf = _split(key)
    dot = f"{prefix}." if prefix else ""
    has_stats = f"{dot}running_var" in keys or f"{dot}running_mean" in keys
    if leaf == "num_batches_tracked":
        return "num_batches_tracked"
    if leaf == "running_mean":
        return "bn_mean"
    if leaf == "running_var":
        return "bn_var"
    if leaf == "weight":
        if len(shape) >= 2:
            return "weight"
        return "bn_weight" if has_stats else "norm_weight"
    if leaf == "bias":
        if has_stats:
            return "bn_bias"
        if f"{dot}weight" in keys and len(tuple(keys[f"{dot}weight"])) == 1:  # type: ignore[arg-type]
            return "norm_bias"
        return "bias"
    return "other"


def _make(kind: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if kind == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    if kind == "weight":
        fan_in = math.prod(shape) // shape[0] if shape[0] else 1
        gain = 2.0 if len(shape) > 2 else 1.0  # He scaling for convs (a ReLU follows), LeCun for linears
        return (_randn(shape, gen) * math.sqrt(gain / max(fan_in, 1))).float()
    if kind in ("bn_weight", "norm_weight"):
        return _uniform(shape, 0.5, 1.0, gen).float()
    if kind in ("bn_bias", "norm_bias", "bn_mean", "other"):
        return (_randn(shape, gen) * 0.1).float()
    if kind == "bn_var":
        return _uniform(shape, 0.5, 1.5, gen).float()
    if kind == "bias":
        return (_randn(shape, gen) * 0.01).float()
    raise ValueError(f"unknown tensor kind {kind!r}")


def synthetic_state_dict(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the given keys (in the given order) and shapes, filled with deterministic values.

    ``shapes`` maps each key to its shape (tuple, list or torch.Size). ``num_batches_tracked`` entries
    become int64 scalars 0 (whatever shape is given, normally ``()``); everything else is float32.
    """
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        kind = tensor_kind(key, shape, shapes)
        gen = _generator(seed + zlib.crc32(key.encode("utf-8")))
        out[key] = _make(kind, shape if kind != "num_batches_tracked" else (), gen)
    return out


def reference_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A float32 standard-normal tensor (drawn in float64, rounded) from a CPU generator seeded ``seed``."""
    return _randn(tuple(int(s) for s in shape), _generator(seed)).float()


def fingerprint(tensors: Mapping[str, torch.Tensor]) -> list[float]:
    """Two float64 checksums of a state dict: sum of values and sum of |values| over all float tensors.

    Stored next to the reference logits so that a mismatch caused by the generator itself (a different
    torch) can be told apart from a mismatch caused by the model.
    """
    total = 0.0
    total_abs = 0.0
    for t in tensors.values():
        if t.is_floating_point():
            d = t.detach().double()
            total += float(d.sum())
            total_abs += float(d.abs().sum())
    return [total, total_abs]
