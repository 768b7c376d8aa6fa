"""Which image files a command's arguments stand for, on this disk or in a bucket, and reading one of them.

An argument is a file, a folder (its image files, sorted, not recursive), or a glob (its matches, sorted; `**`
recurses), as a local path or as a URI of a file system pyarrow reads (s3://, gs://, hdfs://, abfs://, ...:
`pip install 'cnnx[ray]'` brings pyarrow). `cnnx predict` lists its inputs here with or without `--ray`, so
both classify the same files in the same order.
"""

from __future__ import annotations

import fnmatch
import glob
import re
from collections.abc import Iterable
from pathlib import Path

from ..data import IMAGE_SUFFIXES
from ..errors import BackendUnavailable, UsageError

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
WILDCARDS = re.compile(r"[*?[]")


def is_uri(source: str) -> bool:
    return bool(URI.match(source))


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def list_images(arguments: Iterable[str | Path]) -> list[str]:
    """The files that `arguments` stand for, in argument order. An argument that names nothing (an empty
    folder, a glob without matches) stays in the list as it is, so that it is reported as a failed input."""
    found: list[str] = []
    for argument in map(str, arguments):
        matches = _list_uri(argument) if is_uri(argument) else _list_local(argument)
        found += matches or [argument]
    return found


def _list_local(argument: str) -> list[str]:
    path = Path(argument)
    if path.is_dir():
        return sorted(str(p) for p in path.iterdir() if p.is_file() and is_image_name(p.name))
    if not path.exists() and WILDCARDS.search(argument):
        return sorted(p for p in glob.glob(argument, recursive=True) if Path(p).is_file())
    return [str(path)]  # as a path prints it: ./a.jpg is a.jpg


def filesystem(uri: str):
    """(pyarrow file system, path inside it) of a URI."""
    try:
        from pyarrow import fs
    except ImportError:
        raise BackendUnavailable(f"reading '{uri}' needs pyarrow, which is not installed",
                                 "pip install 'cnnx[ray]'") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a scheme or bucket it cannot open
        raise UsageError(f"cannot open '{uri}' ({exc})", "check the URI and the credentials of its store") from None


def _list_uri(argument: str) -> list[str]:
    from pyarrow import fs

    wildcard = WILDCARDS.search(argument)
    base = argument[:wildcard.start()].rsplit("/", 1)[0] if wildcard else argument
    store, base_path = filesystem(base)
    # a glob below the wildcard's folder: recursive when the pattern goes deeper than one level
    recursive = bool(wildcard) and ("/" in argument[len(base) + 1:] or "**" in argument)
    try:
        info = store.get_file_info(base_path)
        if info.type == fs.FileType.File and not wildcard:
            return [argument]
        if info.type != fs.FileType.Directory:
            return []
        entries = store.get_file_info(fs.FileSelector(base_path, recursive=recursive))
    except OSError as exc:
        raise UsageError(f"cannot list '{base}' ({exc})", "check the URI and the credentials of its store") from None
    # a listed path inside the store, as a URI: the base URI (scheme, host, port kept) plus what follows it
    prefix, cut = base.rstrip("/"), len(base_path.rstrip("/"))
    files = sorted(prefix + e.path[cut:] for e in entries if e.type == fs.FileType.File and is_image_name(e.path))
    return [f for f in files if fnmatch.fnmatchcase(f, argument)] if wildcard else files


def read_uri(uri: str) -> bytes:
    """The bytes of the file at `uri`; a file that cannot be read is a UsageError naming it."""
    store, path = filesystem(uri)
    try:
        with store.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read '{uri}' ({exc})") from None
