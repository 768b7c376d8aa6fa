"""The contract between export and a precision's converter (precisions.Precision.converter).

`export_model` makes one `Source` per export (the fp32 graph and what the export knows) and calls the converter
of each artifact precision asked for, `convert(source, path) -> Variant`, where `path` is the artifact's final
name (a converter that needs a file of its own writes it under a hidden temporary name beside it,
artifacts.scratch_path). The pipeline then serializes the variant once, runs ONNX's checker and the parity check
on those bytes, and writes the artifact with its manifest; the converter never writes the artifact itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from torch import nn

from ..models.registry import ModelSpec
from ..reference import CheckData, CheckResult

if TYPE_CHECKING:
    from .calibration import CalibrationSet
    from .options import ExportOptions


@dataclass
class Source:
    """What every converter may read. `graph` is the fp32 graph (simplified, unless simplification was
    rejected); a converter leaves it as it is unless `last` says nothing needs it afterwards."""

    graph: onnx.ModelProto
    spec: ModelSpec
    model: nn.Module  # the eager model (fp32)
    options: ExportOptions
    out: Path  # the output folder
    weights_info: dict  # the manifest's `weights`
    simplify_info: dict  # the manifest's `simplify`
    lrn: list[str]  # LocalResponseNorm nodes, found on the graph before onnxsim dropped the metadata that marks them
    check_data: CheckData | None  # the export's check inputs and eager outputs (None: --no-check)
    calib: CalibrationSet | None  # int8's calibration and held-out tensors, when int8 is asked for
    stage: Callable  # export's stage runner: stage(label, key, fn, *args) names, times and may hold a step
    progress: Callable[[str], None]
    fp32_file: Path | None = None  # the fp32 artifact this export wrote from `graph`, if any
    fp32_bytes: bytes | None = None  # its bytes, when still in memory
    last: bool = False  # no later artifact needs `graph`: it may be converted in place


@dataclass
class Variant:
    """A precision's graph, not yet serialized or checked."""

    proto: onnx.ModelProto
    details: dict  # the manifest's `precision_details`
    check_data: CheckData | None = None  # inputs to judge it on instead of the export's (int8: held-out photos)
    # called with the artifact's bytes and its check (None: --no-check) before the manifest is written, to add
    # what the check measured to `details` (int8: its held-out accuracy)
    finish: Callable[[bytes, CheckResult | None], None] | None = None
    session_options: dict | None = None  # ONNX Runtime options of its check (None: all optimizations, as users run)


def as_exported(source: Source, path: Path) -> Variant:
    """fp32: the graph itself."""
    return Variant(source.graph, {})
