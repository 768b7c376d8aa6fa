"""`cnnx predict`'s answer for a batch of image files: one entry per file, its top-k or why it failed.

The one function that turns files into answers, whether `cnnx predict` runs in one process or each Ray actor
runs it on its share of the files (bulk/prediction.py): the same preprocessing (the artifact's manifest, through
`Predictor.prepare`), the same ranking (`Predictor.top_predictions`), the same error messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CnnxError
from .files import WILDCARDS, is_uri, read_uri

FETCH_THREADS = 16  # concurrent reads from an object store: each waits on the network, not on a CPU


def classify_sources(predictor, sources: Sequence[str], topk: int) -> list[dict]:
    """An entry per source, in order: {"image": source, "predictions": [{"label", "index", "probability"}, ...]}
    (best first), or {"image": source, "error": message} for a file that could not be read or decoded. The
    readable files run as one batch (in chunks of a TensorRT plan's maximum batch)."""
    index = {label: i for i, label in enumerate(predictor.labels)}
    tensors: list[np.ndarray] = []
    entries: list[dict[str, Any]] = []
    for source, content in zip(sources, _contents(sources)):
        try:
            if isinstance(content, CnnxError):
                raise content
            tensors.append(predictor.prepare(content))
            entries.append({"image": source, "predictions": None})
        except CnnxError as exc:
            entries.append({"image": source, "error": exc.message})
    step = predictor.max_batch or max(len(tensors), 1)  # no readable file: no chunk, and no zero step
    logits = [predictor(np.stack(tensors[i:i + step])) for i in range(0, len(tensors), step)]
    ranked = iter(predictor.top_predictions(np.concatenate(logits), topk) if logits else [])
    for entry in entries:
        if "error" not in entry:
            entry["predictions"] = [{"label": p.label, "index": index[p.label], "probability": p.probability}
                                    for p in next(ranked)]
    return entries


def _contents(sources: Sequence[str]) -> list:
    """What Predictor.prepare reads for each source: a local path as it is, the bytes of a URI (fetched
    concurrently), or the error that says why there is nothing to read."""
    uris = [s for s in sources if is_uri(s)]
    fetched = {}
    if uris:
        with ThreadPoolExecutor(min(FETCH_THREADS, len(uris))) as pool:
            fetched = dict(zip(uris, pool.map(_fetch, uris)))
    return [fetched[s] if is_uri(s) else _local(s) for s in sources]


def _fetch(uri: str) -> bytes | CnnxError:
    try:
        return read_uri(uri)
    except CnnxError as exc:
        return exc


def _local(source: str) -> str | CnnxError:
    path = Path(source)
    if path.is_dir():
        return CnnxError(f"folder '{path}' holds no image files")
    if not path.exists() and WILDCARDS.search(source):
        return CnnxError(f"no file matches '{source}'")
    return source
