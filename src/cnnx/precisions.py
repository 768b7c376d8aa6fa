"""The precision registry: every precision cnnx knows and int8's Q/DQ forms, named once.

An artifact precision is an ONNX file of its own, made from the simplified fp32 graph by its converter (export
writes it, `cnnx check` judges it by its gate); a runtime precision is a hint given to a backend that runs another
precision's file (bf16 on OpenVINO runs the fp32 file). The CLI's choices, export's converters and validation,
the parity gates, bench's precisions and the artifact names all read these tables. This module imports nothing
of cnnx's heavy parts, so the CLI and the inference-only runtime can read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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


@dataclass(frozen=True)
class Precision:
    name: str  # also its part of an artifact's name: <model>-<name>[-<form>].onnx (naming.py)
    description: str
    gate: Thresholds | None = None  # artifact precisions: the parity check's default limits
    # artifact precisions: "module:function" in cnnx.export that makes the variant from the fp32 graph
    # (export/variant.py states the contract); export loads it only when the precision is asked for
    converter: str | None = None
    runs_file_of: str | None = None  # runtime hints: the artifact precision whose file a backend runs with it
    has_forms: bool = False  # made in one of several forms (int8: Q_DQ_FORMS), which are part of its name

    @property
    def artifact(self) -> bool:
        """An ONNX file of its own (True), or a backend hint on another precision's file (False)."""
        return self.runs_file_of is None

    @property
    def file_precision(self) -> str:
        """The precision of the file that runs this precision: itself, or the file a hint applies to."""
        return self.runs_file_of or self.name


# Set from docs/results/parity.md (scripts/parity_matrix.py: every zoo model, seeded weights, 10 photos + 2 random
# inputs). fp32 artifacts differ from eager by float rounding only (worst max_rel 9.1e-6, SQNR >= 94 dB), so
# fp32 is judged strictly. fp16 keeps ~3 decimal digits; deep seeded ResNets amplify its rounding (worst:
# resnet152 SQNR 38.8 dB, cosine 0.994, top-1 0.77, top-5 0.88), while a broken conversion (overflow, LRN
# in fp16) gives NaN or cosine far below 0.9. So fp16 is judged by direction, noise level and top-5.
# int8 (held-out images only), from docs/results/int8.md (seeded zoo) and docs/results/trained.md (a resnet18 trained
# on real digits, tests/test_trained.py): healthy artifacts range from 11.9 dB / cosine 0.962 (seeded inception-v3:
# deep random networks amplify quantization noise) to 41-44 dB / 0.9999 (trained, keeping 100 % of its top-1); the
# mildest broken quantization, every activation range clipped to 1/2, gives 8.5 dB / cosine 0.82 and changes 22 of
# 1000 answers (clipped to 1/10: -0.1 dB; an outlier-stretched range: 2.9 dB, tests/test_int8.py). 10 dB and 0.95
# sit between the two, so the default gate fails broken artifacts and passes healthy ones; accuracy itself is `cnnx
# eval`'s verdict, and --min-sqnr tightens the gate for trained weights.


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "the exported graph as it is",
              Thresholds(max_rel=1e-4, min_cosine=0.99999, min_sqnr_db=60.0, min_top1=1.0, min_top5=1.0),
              converter="variant:as_exported"),
    Precision("fp16", "an fp16 graph with fp32 inputs and outputs; overflow-prone nodes stay fp32",
              Thresholds(min_cosine=0.99, min_sqnr_db=30.0, min_top1=0.5, min_top5=0.8), converter="fp16:convert"),
    Precision("bf16", "OpenVINO's bf16 inference-precision hint on the fp32 file (CPUs with AMX/AVX-512 BF16)",
              runs_file_of="fp32"),
    Precision("int8", "a calibrated int8 Q/DQ graph, in one of the Q/DQ forms",
              Thresholds(min_cosine=0.95, min_sqnr_db=10.0, min_top5=0.6), converter="int8:convert", has_forms=True),
)}
assert all(p.gate and p.converter for p in PRECISIONS.values() if p.artifact), "an artifact precision lacks its gate"
assert all(PRECISIONS[p.file_precision].artifact for p in PRECISIONS.values()), "a hint on a file no one writes"
ARTIFACT_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.artifact)
CHECKED_PRECISIONS = ("fp32", "fp16")  # what `cnnx check MODEL` exports and checks unless told otherwise
# Export makes the artifacts in this order: int8 last, so that it quantizes the fp32 file when both are asked for.
EXPORT_ORDER = ARTIFACT_PRECISIONS


@dataclass(frozen=True)
class QdqForm:
    """One of int8's Q/DQ forms: where the file is meant to run decides where the Q/DQ nodes go. The recipe
    behind each (types, placement, the options of ONNX Runtime's quantizer) is export/int8.py's RECIPES."""

    name: str
    description: str
    default: bool = False  # the form of `--int8`: the one form whose name is not part of artifact names

    @property
    def name_part(self) -> str | None:
        """Its part of an artifact's stem (naming.py): none for the default form."""
        return None if self.default else self.name


Q_DQ_FORMS: dict[str, QdqForm] = {f.name: f for f in (
    QdqForm("tensorrt", "symmetric int8 activations and weights, Q/DQ placed by NVIDIA's rules for TensorRT's "
                        "explicit quantization", default=True),
    QdqForm("cpu", "uint8 activations, int8 per-channel weights: ONNX Runtime's fast path on x86 CPUs, with a "
                   "recipe that does not saturate on CPUs without VNNI"),
)}
DEFAULT_Q_DQ_FORM = next(f.name for f in Q_DQ_FORMS.values() if f.default)
# The CPUs a cpu-form artifact is for (export/qdq_forms.py): "auto" decides on this machine.
INT8_CPU_TARGETS = ("auto", "vnni", "any")
# The form a CPU-only export (`--target onnx`) and bench on a CPU use: the one ONNX Runtime runs fastest.
CPU_Q_DQ_FORM = "cpu"
assert CPU_Q_DQ_FORM in Q_DQ_FORMS and sum(f.default for f in Q_DQ_FORMS.values()) == 1

# How activation ranges are set. "auto" calibrates with each of AUTO_CALIBRATION_METHODS and keeps the one whose
# int8 graph the probe (the first calibration tensors) finds most accurate (export/int8.py).
CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "mse", "auto")
AUTO_CALIBRATION_METHODS = ("minmax", "mse")
DEFAULT_CALIBRATION_METHOD = "minmax"
