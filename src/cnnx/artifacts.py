"""Files on disk: output folders, atomic writes, hashes, and the provenance facts every manifest records."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import functools
import glob
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from .errors import UsageError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def file_mode() -> int:
    """The mode a new file gets under this process's umask (0o644 under the usual 022). mkstemp creates 0o600,
    which a Triton container running as another user could not read."""
    try:
        with open("/proc/self/status") as status:  # Linux >= 4.7: read the umask without changing it
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free if folder.exists() else 0


def _on_other_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev != b.stat().st_dev
    except OSError:
        return False


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def is_write_failure(exc: OSError) -> bool:
    """A full disk or a permission problem: the user's to fix, not a defect of ours."""
    return exc.errno in _NO_SPACE or isinstance(exc, PermissionError)


def write_error(path: Path, exc: OSError, size: int | None = None, option: str = "--out") -> UsageError:
    """An OSError while writing `path` as the error a user can act on (exit 2): a full disk says how much room
    is needed, a permission problem says which folder. `option` is the one that chooses the folder."""
    folder = path.parent
    if exc.errno in _NO_SPACE:
        free = _free_bytes(folder)
        temp = Path(tempfile.gettempdir())
        if (size is None or free >= size) and _on_other_device(temp, folder) and _free_bytes(temp) < free:
            return UsageError(f"no space left while writing '{path.name}': the temporary folder '{temp}' has "
                              f"{_mib(_free_bytes(temp))} free ('{folder}' has {_mib(free)})",
                              "free some space there, or set TMPDIR to a folder with room (cnnx and the "
                              "quantizer keep temporary copies of the model there)")
        need = f"{_mib(size)} needed, " if size else ""
        why = ": out of inodes or over a quota" if size and free >= size else ""
        return UsageError(f"no space left on the device of '{folder}' while writing '{path.name}' ({need}"
                          f"{_mib(free)} free{why})", f"free some space or choose another folder with {option}")
    return UsageError(f"cannot write '{path}' ({exc.strerror or exc})",
                      f"choose another folder with {option}, or fix its permissions")


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


def prepare_output_file(path: str | Path, option: str) -> Path:
    """Create the folder of a report file (`option` FILE) and prove it writable before any work starts: a
    benchmark or a check of the whole zoo must not lose its report at the end."""
    with scratch_path(Path(path), option=option):
        pass
    return Path(path)


@contextlib.contextmanager
def scratch_path(final: Path, size: int | None = None, option: str = "--out"):
    """Yield a hidden temporary file next to `final` (`.<name>.<random>.partial`, the pattern artifact_lock
    cleans up after a killed run), with the umask's permissions, creating `final`'s folder if missing; it is
    removed when the block ends. A full disk or a permission problem becomes a UsageError naming the path (and,
    when `size` says how big the file will be, the room needed) and `option`, the one that chose the path."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if size is not None and shutil.disk_usage(final.parent).free < size:
            raise OSError(errno.ENOSPC, "No space left on device")
        fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
        os.fchmod(fd, file_mode())
        os.close(fd)
    except OSError as exc:
        raise write_error(final, exc, size, option) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
    except OSError as exc:
        if is_write_failure(exc):
            raise write_error(final, exc, size, option) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(final: Path, size: int | None = None, option: str = "--out"):
    """Yield a temporary path next to `final`; rename it into place only if the block succeeds. An
    interrupted or failed write leaves no file under the final name (see scratch_path for the rest)."""
    with scratch_path(final, size, option) as tmp:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise write_error(Path(final), exc, size, option) from None


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, stale: str, option: str = "--out"):
    """Hold an exclusive lock (`lock_file`, which stays, empty) across processes; while it is held, remove what
    the glob pattern `stale` matches: temporaries a killed run left (SIGKILL skips every cleanup), which no live
    writer can own."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as exc:
        raise write_error(lock_file, exc, option=option) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for leftover in map(Path, glob.glob(stale)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def artifact_lock(final: Path):
    """Lock one artifact (its file and its manifest), so that concurrent runs writing it take turns and each
    leaves a consistent pair; its hidden temporaries from a killed run are removed (`.<name>.lock` stays)."""
    final = Path(final)
    return exclusive_lock(final.parent / f".{final.name}.lock",
                          glob.escape(str(final.parent / f".{final.stem}")) + ".*.partial")


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


HOME_ENV = "CNNX_HOME"


def cache_home() -> Path:
    """cnnx's cache folder (published weights, exports made by `check MODEL`): $CNNX_HOME, else the XDG cache
    folder's cnnx."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec ignores relative paths
    return base / "cnnx"


CORE_TOOLS = ("cnnx", "onnx", "onnxscript", "onnxsim")  # what every export runs, besides the backends' runtimes


@functools.cache
def package_version(package: str) -> str | None:
    """The installed version of the distribution that provides import package `package` (onnxruntime-gpu
    provides onnxruntime), or None; nothing is imported. The distribution named as the package is looked up
    first: mapping import names to distributions reads every installed distribution's file list (1.6 s of a
    6.6 s GoogLeNet export when it ran once per package), so that happens once, and only for a package that
    is importable but installed under another name."""
    if importlib.util.find_spec(package) is None:  # finds the package's files, imports nothing
        return None
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    for distribution in _distributions_by_import_name().get(package, ()):
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(distribution)
    return None


@functools.cache
def _distributions_by_import_name() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def tool_versions() -> dict[str, str]:
    """Python and the installed versions of the core tools and of every backend's runtime package."""
    from .backends import packages

    versions = {"python": platform.python_version()}
    for package in (*CORE_TOOLS, *packages()):
        version = package_version(package)
        if version is not None:
            versions[package] = version
    return versions


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
