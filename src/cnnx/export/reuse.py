"""An export that was already done is not done again.

Every artifact's manifest records an `export_key`: a hash of everything that decides its bytes and its verdict
(cnnx's own code, the tool versions, the model, input size, weights, opset, simplification, precision, the int8
recipe and calibration tensors, and the check's images and thresholds). `cnnx export`, and the commands that
export on the way (`cnnx check MODEL`, `cnnx bench`), reuse an artifact in the output folder whose manifest
verifies (sha256, graph binding) and carries the same key and, when a check is asked for, a verdict: no model
is built, nothing is exported. `--force` exports again anyway.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from ..artifacts import tool_versions
from ..errors import UsageError
from ..manifest import OnnxManifest, read_manifest

KEY_FORMAT = "cnnx-export-key/1"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of cnnx's own source files: a changed cnnx (an upgrade, or an edited checkout) exports anew."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        digest.update(str(source.relative_to(package)).encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def folder_digest(folder: str | Path | None) -> str | None:
    """What a folder of images holds, cheaply: names, sizes and modification times."""
    if folder is None:
        return None
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).iterdir() if p.is_file())
    return hashlib.sha256(json.dumps([str(Path(folder).resolve()), entries]).encode()).hexdigest()


def export_key(**parts) -> str:
    """The key of one artifact from the parts that decide it (pipeline.export_model names them)."""
    parts = {"format": KEY_FORMAT, "code": code_digest(), "tools": tool_versions(), **parts}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def up_to_date(path: Path, key: str, needs_verdict: bool) -> OnnxManifest | None:
    """The manifest of the artifact at `path` when it can be reused for `key`, else None."""
    if not path.is_file():
        return None
    try:
        manifest = read_manifest(path, OnnxManifest)  # verifies the artifact's sha256 and the graph binding
    except UsageError:
        return None
    if manifest.export_key != key or (needs_verdict and manifest.parity is None):
        return None
    return manifest
