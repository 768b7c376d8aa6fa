"""What `cnnx export` (export_model) is asked to do: the use case's one input."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..parity import Thresholds
from ..precisions import CPU_Q_DQ_FORM, DEFAULT_CALIBRATION_METHOD, DEFAULT_Q_DQ_FORM
from .calibration import DEFAULT_CALIB_SIZE
from .onnx import DEFAULT_OPSET


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how. Only `model` is required; the defaults are `cnnx export`'s."""

    model: str
    precisions: tuple[str, ...] = ("fp32",)
    out_dir: str | Path = "export"
    weights: str | Path | None = None  # a torchvision/timm state dict; None: seeded initialisation
    pretrained: bool | str | None = None  # published ImageNet weights: True (the default), "v1", "v2"
    seed: int = 0
    # A fine-tuned network: its number of classes (None: the checkpoint's head, else 1000), its class names (a
    # labels file with one name per line, or the names), and the resolution it was trained at (None: native;
    # resize defaults to round(input_size / 0.875)).
    num_classes: int | None = None
    labels: str | Path | Sequence[str] | None = None
    input_size: int | None = None
    resize: int | None = None
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # "auto": TorchScript's where it exports the model, else dynamo (export/onnx.py)
    simplify: bool = True
    check: bool = True  # parity against eager PyTorch
    images: str | Path | None = None  # photos for the check (default: the shipped samples)
    thresholds: Mapping[str, Thresholds | None] = field(default_factory=dict)  # per precision
    # int8: calibration data (folder, .npy/.npz, "samples" or "random"; see calibration.py) and the Q/DQ recipe
    calib_data: str | Path | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    calib_method: str = DEFAULT_CALIBRATION_METHOD
    int8_target: str | None = None  # the Q/DQ form; None: CPU_Q_DQ_FORM when target is "onnx", else the default
    int8_exclude: str | list[str] | None = None  # "auto" (rescue) or node names
    # the cpu form's CPUs (export/qdq_forms.py): "auto" (this machine's kind), "vnni" (8-bit weights), "any" (7-bit)
    int8_cpus: str = "auto"
    recalibrate: bool = False
    # TensorRT engines: "auto" builds one when TensorRT and a GPU are usable, "tensorrt" requires it, "onnx" skips
    target: str = "auto"
    max_batch: int = 32
    force: bool = False  # export again even when an up-to-date artifact is in out_dir (export/reuse.py)

    @property
    def q_dq_form(self) -> str:
        return self.int8_target or (CPU_Q_DQ_FORM if self.target == "onnx" else DEFAULT_Q_DQ_FORM)
