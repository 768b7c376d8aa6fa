"""The one name of an artifact. Its ONNX file, the TensorRT plan built from it and its Triton model are all
named `<model>-<precision>[-<form>]`: the int8 Q/DQ form is part of the name unless it is the default
(TensorRT's; precisions.QdqForm.name_part), so both int8 forms of one model sit side by side in an export
folder, a plan folder and a Triton repository. Every name cnnx derives comes from `artifact_stem`."""

from __future__ import annotations

from .precisions import PRECISIONS, Q_DQ_FORMS


def artifact_stem(model: str, precision: str | None, q_dq_form: str | None = None) -> str:
    """`precision` None: a file without a cnnx manifest, named by its model (its file stem) alone. `q_dq_form`:
    the form of a precision made in forms (int8's Q/DQ form); ignored for the others."""
    parts = [model, *([precision] if precision else [])]
    known = PRECISIONS.get(precision) if precision else None
    form = Q_DQ_FORMS.get(q_dq_form) if known is not None and known.has_forms and q_dq_form else None
    if form is not None and form.name_part:
        parts.append(form.name_part)
    return "-".join(parts)


def artifact_name(model: str, precision: str, q_dq_form: str | None = None) -> str:
    """The exported ONNX file: `<stem>.onnx`."""
    return f"{artifact_stem(model, precision, q_dq_form)}.onnx"


def plan_filename(stem: str, min_batch: int, max_batch: int) -> str:
    """A TensorRT plan built from the artifact named `stem`, for the batch profile min..max."""
    return f"{stem}-b{min_batch}-{max_batch}.plan"
