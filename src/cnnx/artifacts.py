"""Artifacts on disk: output folders, atomic writes, hashes and the provenance manifest."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import UsageError

MANIFEST_FORMAT = "cnnx-manifest/1"


def prepare_output_dir(out_dir: str | Path) -> Path:
    """Create the output folder if needed and prove it is writable before any work starts."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".cnnx-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write to output folder '{out}' ({exc.strerror or exc})",
                         "choose another folder with --out, or fix its permissions") from None
    return out


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path next to `final`; rename it into place only if the block succeeds.

    An interrupted or failed write leaves no file under the final name (the hidden temporary is removed)."""
    final = Path(final)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def read_manifest(artifact: str | Path) -> dict:
    """The manifest of an artifact, checked against the artifact's bytes."""
    artifact = Path(artifact)
    if not artifact.is_file():
        raise UsageError(f"artifact '{artifact}' does not exist", "export one first: cnnx export MODEL")
    path = manifest_path(artifact)
    if not path.is_file():
        raise UsageError(f"'{artifact}' has no manifest ('{path.name}' is missing), so cnnx cannot tell which "
                         "model and weights it came from",
                         "re-export it with `cnnx export MODEL`, which writes both files")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"manifest '{path}' is not readable JSON ({exc})", "re-export the artifact") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UsageError(f"'{path}' is not a cnnx manifest (format {MANIFEST_FORMAT!r} expected)",
                         "re-export the artifact with this version of cnnx")
    if sha256_file(artifact) != manifest.get("artifact_sha256"):
        raise UsageError(f"'{artifact}' does not match its manifest (sha256 differs): the file was modified, "
                         "truncated or replaced after export",
                         f"re-export it: cnnx export {manifest.get('model', 'MODEL')}")
    return manifest


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("cnnx", "torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "openvino", "tensorrt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
