"""The precision registry: every precision cnnx knows and int8's Q/DQ forms, named once.

An artifact precision is an ONNX file of its own, made from the simplified fp32 graph (export writes it,
`cnnx check` judges it); a runtime precision is a hint given to a backend that runs the fp32 file (bf16 on
OpenVINO). The CLI's choices, export's validation and bench's precisions all read these tables. This module
imports nothing, so the CLI and the inference-only runtime can read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .naming import DEFAULT_Q_DQ_FORM


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
    name: str
    artifact: bool  # True: an ONNX file of its own; False: a backend hint on the fp32 file
    description: str
    gate: Thresholds | None = None  # the parity check's default limits (every artifact precision has one)


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


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", True, "the exported graph as it is",
              Thresholds(max_rel=1e-4, min_cosine=0.99999, min_sqnr_db=60.0, min_top1=1.0, min_top5=1.0)),
    Precision("fp16", True, "an fp16 graph with fp32 inputs and outputs; overflow-prone nodes stay fp32",
              Thresholds(min_cosine=0.99, min_sqnr_db=30.0, min_top1=0.5, min_top5=0.8)),
    Precision("bf16", False, "OpenVINO's bf16 inference-precision hint on the fp32 file (CPUs with AMX/AVX-512 BF16)"),
    Precision("int8", True, "a calibrated int8 Q/DQ graph, in one of the Q/DQ forms",
              Thresholds(min_cosine=0.95, min_sqnr_db=10.0, min_top5=0.6)),
)}
assert all(p.gate for p in PRECISIONS.values() if p.artifact), "an artifact precision without its parity gate"
ARTIFACT_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.artifact)

# int8's Q/DQ forms: where the file is meant to run decides where the Q/DQ nodes go (export/int8.py)
Q_DQ_FORMS: dict[str, str] = {
    "tensorrt": "symmetric int8 activations and weights, Q/DQ where TensorRT's explicit quantization wants them",
    "cpu": "uint8 activations, int8 per-channel weights: ONNX Runtime's fast path on x86 CPUs",
}
assert DEFAULT_Q_DQ_FORM in Q_DQ_FORMS

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIBRATION_METHOD = "minmax"
