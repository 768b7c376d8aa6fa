"""Published weight files on this machine: downloaded once into a cache, sha256-verified before every use.

    $CNNX_HOME/weights/<file name>             (else $XDG_CACHE_HOME/cnnx/weights, else ~/.cache/cnnx/weights)
    $CNNX_HOME/weights/<file name>.sha256      what cnnx verified: the file's sha256, size and mtime

The transfer is torch.hub's `download_url_to_file`: it streams into `<file>.<uuid>.partial` beside the target,
hashes while it writes, moves the file into place only when its sha256 matches, and removes the partial file
on any failure (HTTP error, refused connection, hash mismatch, interruption). A transfer that the server cuts
short is not an error for urllib (it just ends), so it is caught by that hash check; tests/test_pretrained.py
proves each of these on a real loopback server.

A file already in the cache is hashed in full the first time cnnx sees it (a hand-copied file included); the
digest is remembered with the file's size and mtime, so later uses cost a stat. A file whose size or mtime
changed is hashed again. This guards against truncated, corrupted or wrong files, not against someone who edits
the file and restores its mtime.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError

from ..artifacts import HOME_ENV, cache_home, sha256_file, write_json
from ..errors import DownloadFailed, UsageError

MIRROR_ENV = "CNNX_WEIGHTS_MIRROR"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class WeightsFile:
    """A file to fetch: where the publisher serves it, its name in the cache (and in a mirror), and the hash it
    must have: a full sha256, or the leading hex digits the publisher gives (torchvision's 8)."""

    url: str
    file_name: str
    sha256: str

    def matches(self, digest: str) -> bool:
        return bool(self.sha256) and digest.startswith(self.sha256)


def cache_dir() -> Path:
    """Where downloaded weights are kept: $CNNX_HOME/weights, else the XDG cache folder's cnnx/weights."""
    return cache_home() / "weights"


def cached_path(file: WeightsFile) -> Path:
    """Where `file` is (or will be) in the cache: also where a hand-copied file is picked up."""
    return cache_dir() / file.file_name


def source_url(file: WeightsFile) -> str:
    """The publisher's URL, or `<mirror>/<file name>` when CNNX_WEIGHTS_MIRROR names a base URL or a folder."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return file.url
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{file.file_name}"
    return (Path(mirror).expanduser().resolve() / file.file_name).as_uri()


def fetch(file: WeightsFile, progress: Progress = lambda stage: None) -> tuple[Path, str]:
    """The verified local copy of `file` and its full sha256: the cached copy when it matches, else a fresh
    download (a cached copy that does not match is deleted first). Raises DownloadFailed (exit 3) when the
    file cannot be obtained, naming the URL and the path where a hand-copied file is picked up."""
    path = cached_path(file)
    if path.is_file():
        digest = known_sha256(path)
        if file.matches(digest):
            return path, digest
        progress(f"{path} is not the published file (sha256 {digest[:16]}..., expected {file.sha256[:16]}...): "
                 "deleted, downloading it again")
        _forget(path)
    _download(file, path, progress)
    return path, known_sha256(path)


def known_sha256(path: Path) -> str:
    """The file's sha256: remembered beside it with its size and mtime, and computed again when either changed."""
    memo = path.with_name(path.name + ".sha256")
    stat = path.stat()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        known = json.loads(memo.read_text())
        if known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
            return str(known["sha256"])
    digest = sha256_file(path)
    with contextlib.suppress(OSError):  # a read-only cache still works; it is just hashed on every use
        write_json(memo, {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return digest


def _forget(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)


def _download(file: WeightsFile, path: Path, progress: Progress) -> None:
    from torch.hub import download_url_to_file

    url = source_url(file)
    hint = (f"copy {file.file_name} by hand to {path} (it is sha256-checked before use), or set {MIRROR_ENV} to "
            f"a folder or base URL that serves it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the weights cache folder '{path.parent}' ({exc.strerror or exc})",
                         f"set {HOME_ENV} to a writable folder") from None
    progress(f"downloading {file.file_name} from {url}")
    try:
        with _paused(progress):
            # tqdm's bar on stderr, and only on a terminal (asked once the caller's display has let go of stderr)
            download_url_to_file(url, str(path), hash_prefix=file.sha256, progress=sys.stderr.isatty())
    except HTTPError as exc:
        raise DownloadFailed(f"could not download {url}: HTTP {exc.code} {exc.reason}", hint) from None
    except URLError as exc:
        raise DownloadFailed(f"could not download {url}: {exc.reason}", hint) from None
    except (ConnectionError, TimeoutError, http.client.HTTPException) as exc:
        raise DownloadFailed(f"the download of {url} broke off ({exc.__class__.__name__}: {exc})", hint) from None
    except RuntimeError as exc:
        if "invalid hash value" not in str(exc):
            raise
        raise DownloadFailed(f"the file downloaded from {url} is not the published one: {exc} (the transfer was "
                             "cut off, or the server sent another file); it was deleted and nothing was loaded",
                             hint) from None
    except OSError as exc:  # writing the cache: disk full, permissions
        raise UsageError(f"cannot write '{path}' ({exc.strerror or exc})",
                         f"free some space or set {HOME_ENV} to a writable folder") from None


def _paused(progress: Progress):
    """The caller's progress display steps aside while the download draws its own bar (see cli.StageProgress)."""
    return progress.paused() if hasattr(progress, "paused") else contextlib.nullcontext()
