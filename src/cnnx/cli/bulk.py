"""What `cnnx predict` and `cnnx eval` share for bulk work: `--ray [ADDRESS]` and `--actors`, and a progress bar."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import click

from ..errors import UsageError
from .common import err_console

# what --ray accepts as a cluster address: auto, local, a URI (ray://HOST:10001), HOST:PORT or [IPv6]:PORT
ADDRESS = re.compile(r"auto|local|[A-Za-z][A-Za-z0-9+.-]*://\S+|[\w.-]+:\d+|\[[0-9A-Fa-f:]+\]:\d+")
LOCAL = ""  # the value of a bare --ray: a local Ray instance for the command (or the cluster in RAY_ADDRESS)


def ray_options(fn):
    fn = click.option("--actors", default=None, metavar="N|MIN-MAX",
                      help="With --ray: actors in the pool, each holding the loaded artifact(s); MIN-MAX lets the "
                           "pool grow with the cluster. Default: one per --threads CPUs of the cluster.")(fn)
    return click.option("--ray", "ray_address", is_flag=False, flag_value=LOCAL, default=None, metavar="[ADDRESS]",
                        help="Run on a Ray cluster (pip install 'cnnx[ray]'): at ADDRESS (HOST:PORT of the head node, "
                             "ray://HOST:10001, auto), else a local Ray instance started for the command (or the "
                             "cluster in RAY_ADDRESS). The same answers as without --ray.")(fn)


def ray_settings(ray_address: str | None, actors: str | None, *, batch: int, threads: int | None,
                 backend: str | None):
    """RayOptions from the command line; None without --ray (then --actors is refused)."""
    if ray_address is None:
        if actors is not None:
            raise UsageError("--actors applies to --ray only", "add --ray [ADDRESS], or leave out --actors")
        return None
    if ray_address != LOCAL and not ADDRESS.fullmatch(ray_address):
        raise UsageError(f"--ray took '{ray_address}' as the address of a Ray cluster, which it is not",
                         "put --ray after the images (or before another option), or write --ray=HOST:PORT")
    from ..bulk import RayOptions

    return RayOptions(address=ray_address or None, actors=_actors(actors), batch=batch, threads=threads or 1,
                      backend=backend)


def _actors(text: str | None) -> int | tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", text.strip())
    if not match or int(match[1]) < 1 or (match[2] and int(match[2]) < int(match[1])):
        raise UsageError(f"--actors takes N or MIN-MAX (1 <= MIN <= MAX), not '{text}'")
    return (int(match[1]), int(match[2])) if match[2] else int(match[1])


@contextlib.contextmanager
def images_progress(label: str, enabled: bool):
    """A progress bar on stderr (terminals only): images done of all, images/s, and for eval the running top-1
    of each row. Yields update(done, total, running={name: top-1 so far} or nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                   TimeElapsedColumn(), TextColumn("{task.fields[running]}"), console=err_console, transient=True,
                   disable=not (enabled and err_console.is_terminal))
    task = bar.add_task(label, total=None, rate="", running="")
    first: list[tuple[float, int]] = []  # (time, images done) at the first update: the rate counts from there,
    # after the artifact is loaded and the files listed (minutes for a bucket), which the bar's clock includes

    def update(done: int, total: int, running: dict | None = None) -> None:
        now = time.perf_counter()
        if not first:
            first.append((now, done))
        since, done_then = first[0]
        rate = f"{(done - done_then) / (now - since):.0f} img/s" if done > done_then else ""
        accuracy = "  ".join(f"{Path(name).stem} {100 * top1:.1f}%" for name, top1 in (running or {}).items())
        bar.update(task, completed=done, total=total, rate=rate, running=f"top-1: {accuracy}" if accuracy else "")

    with bar:
        yield update
