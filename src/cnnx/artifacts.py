"""Files on disk: output folders, atomic writes, hashes, and the provenance facts every manifest records."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import hashlib
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from .errors import UsageError

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


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths (files or folders) in one atomic step, so that each name always exists:
    Linux's renameat2(RENAME_EXCHANGE) (glibc >= 2.28; file systems that support it: ext4, xfs, btrfs, tmpfs,
    ...). Returns False, having changed nothing, where the OS or the file system does not offer it."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library without renameat2
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # kernel or file system without the flag
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("cnnx", "torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "openvino", "tensorrt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
