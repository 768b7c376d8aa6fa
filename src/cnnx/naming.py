"""The one name of an artifact. Its ONNX file, the TensorRT plan built from it and its Triton model are all
named `<model>-<precision>[-<form>]`: the int8 Q/DQ form is part of the name unless it is the default
(TensorRT's), so both int8 forms of one model sit side by side in an export folder, a plan folder and a Triton
repository. Every name cnnx derives comes from `artifact_stem`."""

from __future__ import annotations

DEFAULT_Q_DQ_FORM = "tensorrt"


def artifact_stem(model: str, precision: str | None, q_dq_form: str | None = None) -> str:
    """`precision` None: a file without a cnnx manifest, named by its model (its file stem) alone."""
    parts = [model, *([precision] if precision else [])]
    if precision == "int8" and q_dq_form not in (None, DEFAULT_Q_DQ_FORM):
        parts.append(q_dq_form)
    return "-".join(parts)


def artifact_name(model: str, precision: str, q_dq_form: str | None = None) -> str:
    """The exported ONNX file: `<stem>.onnx`."""
    return f"{artifact_stem(model, precision, q_dq_form)}.onnx"


def plan_filename(stem: str, min_batch: int, max_batch: int) -> str:
    """A TensorRT plan built from the artifact named `stem`, for the batch profile min..max."""
    return f"{stem}-b{min_batch}-{max_batch}.plan"
