"""`cnnx predict --output FILE`: the answers as CSV, Parquet or JSON lines, chosen by the file's suffix.

Columns of CSV and Parquet, one row per image: `image`, `error` (empty when it was classified), then `label_1`,
`index_1`, `probability_1` ... up to `label_K`, `index_K`, `probability_K` for `--topk K`. JSON lines: one
object per image, as in `cnnx predict --json`'s "results". The file is written under a temporary name and
renamed into place when every image is in it: a failed or interrupted run leaves no file that looks complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
from pathlib import Path

from ..artifacts import atomic_path, prepare_output_file
from ..errors import BackendUnavailable, UsageError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
OPTION = "--output"


def output_format(path: str | Path) -> str:
    """The format a file name asks for; any other suffix is a UsageError, before any work."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format of '{path}' from its suffix",
                         "name the output file .csv, .parquet or .jsonl")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise BackendUnavailable("writing Parquet needs pyarrow, which is not installed",
                                     "pip install 'cnnx[ray]' (or pyarrow), or write .csv / .jsonl") from None
    return fmt


def columns(topk: int) -> list[str]:
    return ["image", "error"] + [f"{name}_{rank}" for rank in range(1, topk + 1)
                                 for name in ("label", "index", "probability")]


def flat_row(entry: dict, topk: int) -> dict:
    """An entry of classify_sources as one row of `columns(topk)` (None where there is no value)."""
    row = dict.fromkeys(columns(topk))
    row["image"], row["error"] = entry["image"], entry.get("error")
    for rank, p in enumerate(entry.get("predictions") or [], 1):
        row[f"label_{rank}"], row[f"index_{rank}"], row[f"probability_{rank}"] = p["label"], p["index"], \
            p["probability"]
    return row


@contextlib.contextmanager
def prediction_writer(path: str | Path, topk: int):
    """Yield `write(entries)`; the file appears under `path` only when the block ends without an error."""
    path = Path(path)
    fmt = output_format(path)
    prepare_output_file(path, OPTION)
    with atomic_path(path, option=OPTION) as tmp:
        if fmt == "parquet":
            with _parquet(tmp, topk) as write:
                yield write
            return
        with open(tmp, "w", newline="", encoding="utf-8") as stream:
            if fmt == "jsonl":
                yield lambda entries: stream.writelines(json.dumps(e) + "\n" for e in entries)
            else:
                writer = csv.DictWriter(stream, columns(topk))
                writer.writeheader()
                yield lambda entries: writer.writerows(flat_row(e, topk) for e in entries)


PARQUET_ROW_GROUP = 65536  # rows buffered per row group: large groups read fast, and memory stays bounded


@contextlib.contextmanager
def _parquet(path: Path, topk: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("image", pa.string()), pa.field("error", pa.string())]
    for rank in range(1, topk + 1):
        fields += [pa.field(f"label_{rank}", pa.string()), pa.field(f"index_{rank}", pa.int64()),
                   pa.field(f"probability_{rank}", pa.float64())]
    schema = pa.schema(fields)
    pending: list[dict] = []
    with pq.ParquetWriter(path, schema) as writer:
        def flush() -> None:
            writer.write_table(pa.Table.from_pylist(pending, schema=schema))
            pending.clear()

        def write(entries) -> None:
            pending.extend(flat_row(e, topk) for e in entries)
            if len(pending) >= PARQUET_ROW_GROUP:
                flush()

        yield write
        flush()
