"""Ray for the bulk jobs: the optional import, one connection per job, the actor pool, the artifacts shipped
to every node, the job's loop (`run_blocks`: blocks of images out, each block's answer back once), and a failed
job turned into an error a user can act on."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, CnnxError, UsageError, first_line
from ..manifest import manifest_path

INSTALL_HINT = "install it: pip install 'cnnx[ray]' (on every node of the cluster too)"
# Ray's own chatter that says nothing to a cnnx user: the notice that a local instance uses token
# authentication (Ray's default), and that Ray Data's progress bars are off (the command draws its own)
QUIET_LOGGERS = ("ray._private.authentication", "ray.data._internal.progress")


@dataclass(frozen=True)
class RayOptions:
    """How a bulk job runs on Ray.

    address: None (a local Ray instance for the job, or the cluster in RAY_ADDRESS when it is set), "auto" (the
    cluster this machine belongs to), "HOST:PORT" (the head node's GCS) or "ray://HOST:10001" (Ray Client).
    actors: the size of the actor pool (each actor holds one loaded copy of the artifacts), or (min, max) for
    a pool that grows with the cluster; None: one per `threads` CPUs of the cluster (one per GPU for a GPU
    backend). batch: images per inference, and per task (what a killed actor's retry redoes). threads: the
    backend's intra-op threads per actor, and the CPUs each actor reserves. backend: as for cnnx.load.

    A dead actor is restarted, and the batches it held are run again, as often as needed (Ray Data's default
    fault tolerance); the answers keep each input once (run_blocks)."""

    address: str | None = None
    actors: int | tuple[int, int] | None = None
    batch: int = 32
    threads: int = 1
    backend: str | None = None

    def check(self) -> None:
        for name in ("batch", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{name} must be a positive integer, not {value!r}")
        if self.actors is None:
            return
        sizes = self.actors if isinstance(self.actors, tuple) else (self.actors,)
        valid = (len(sizes) == (2 if isinstance(self.actors, tuple) else 1)
                 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
                 and sizes[0] <= sizes[-1])
        if not valid:
            raise UsageError(f"actors must be a positive number or a (min, max) range, not {self.actors!r}")


DEFAULT_OPTIONS = RayOptions()


def require_ray():
    """The ray module, with Ray Data; a missing install is an error that says what to install (exit 3)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"running on Ray needs Ray Data, and the '{exc.name}' package is not installed",
                                 INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray, connected for one job. A connection the caller already holds (ray.init in a Python program) is
    used as it is and left open; otherwise the job connects to `address` (see RayOptions), or starts a local
    Ray instance on this machine's CPUs, and disconnects (stopping that instance) when it ends."""
    ray = require_ray()
    if ray.is_initialized():
        with _quiet_data_context(ray), _cluster_messages_on_stderr(ray):
            yield ray
        return
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    _check_reachable(target)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a command line tool does not report usage unasked
    settings = {"logging_level": logging.WARNING, "log_to_driver": False}
    if target == "local":
        settings.update(include_dashboard=False, num_cpus=usable_cpus())
    try:
        with _quiet_loggers():
            ray.init(address=target, **settings)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError, ... depending on what is wrong
        if target == "local":
            raise BackendUnavailable(f"cannot start a local Ray instance ({first_line(exc)})",
                                     "see Ray's logs under /tmp/ray/session_latest/logs") from None
        raise BackendUnavailable(f"cannot connect to the Ray cluster at '{target}' ({first_line(exc)})",
                                 "start one with `ray start --head`, and pass its address: HOST:PORT of the head "
                                 "node, ray://HOST:10001, or auto on a node of the cluster") from None
    try:
        with _quiet_data_context(ray), _cluster_messages_on_stderr(ray):
            yield ray
    finally:
        ray.shutdown()
        sweep_copies()  # a local instance's actors are gone now: what a killed one left goes with them


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity on Linux; every CPU where there is none, as on macOS)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


HOST_PORT = re.compile(r"(?:[a-z]+://)?(?P<host>\[[0-9a-fA-F:]+\]|[^:/]+):(?P<port>\d+)/?")
CONNECT_TIMEOUT = 5  # seconds to open a TCP connection to the head node


def _check_reachable(target: str) -> None:
    """Refuse an address nothing listens at, at once: ray.init retries an unreachable GCS for minutes."""
    match = HOST_PORT.fullmatch(target)
    if not match:
        return  # local, auto: Ray finds (or starts) the instance itself
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise BackendUnavailable(f"nothing answers at the Ray address '{target}' ({exc.strerror or exc})",
                                 "check the address: HOST:PORT of the head node's GCS (6379 unless `ray start "
                                 "--head --port` said otherwise), or ray://HOST:10001 for Ray Client") from None


@contextlib.contextmanager
def _cluster_messages_on_stderr(ray):
    """The driver prints the cluster's messages (a worker that died and whose task is retried, ...) on stdout,
    where they would break `--json`; during a job they go to stderr. Ray has no setting for it, hence the
    wrapped function (ray._private.worker.print_to_stdstream); without it, Ray's own behaviour."""
    worker = ray._private.worker
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        yield
        return
    worker.print_to_stdstream = lambda data, **kwargs: original({**data, "is_err": True}, **kwargs)
    try:
        yield
    finally:
        worker.print_to_stdstream = original


@contextlib.contextmanager
def _quiet_loggers():
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _quiet_data_context(ray):
    """Ray Data's settings for a cnnx job, restored afterwards: results in input order (the same order as in
    one process), no progress bars of its own (the command draws one), only its warnings on stderr."""
    context = ray.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.WARNING)
    try:
        with _quiet_loggers():
            yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        data_logger.setLevel(level)


def actor_pool(ray, options: RayOptions, gpu: bool, tasks: int) -> dict:
    """map_batches' arguments for the pool of actors: its size (never more actors than `tasks`, the blocks of
    the job: an actor without a block would only load the artifact), and what each actor reserves."""
    each = {"num_gpus": 1} if gpu else {"num_cpus": options.threads}
    if options.actors is None:
        resources = ray.cluster_resources()
        available = int(resources.get("GPU", 0)) if gpu else int(resources.get("CPU", 1)) // options.threads
        if available < 1:
            raise BackendUnavailable(f"the Ray cluster has no {'GPU' if gpu else f'{options.threads} CPUs'} for "
                                     "one actor", "add nodes, or run with fewer threads per actor")
        sizes = {"size": min(available, tasks)}
    elif isinstance(options.actors, tuple):
        sizes = {"min_size": min(options.actors[0], tasks), "max_size": min(options.actors[1], tasks)}
    else:
        sizes = {"size": min(options.actors, tasks)}
    return {"compute": ray.data.ActorPoolStrategy(**sizes), **each}


@dataclass(frozen=True)
class ShippedArtifact:
    """An artifact and its manifest as bytes, put into Ray's object store once, so that every node loads the
    same files without a shared disk; each actor checks them again with cnnx.load."""

    name: str  # the path the user gave: answers and reports name the artifact by it
    artifact: bytes = field(repr=False)
    manifest: bytes = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> ShippedArtifact:
        path = Path(path)
        return cls(str(path), path.read_bytes(), manifest_path(path).read_bytes())

    def unpack(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(self.name).name
        path.write_bytes(self.artifact)
        manifest_path(path).write_bytes(self.manifest)
        return path


def copies_root() -> Path:
    """Where actors unpack the artifacts they are sent, one folder per actor process (per user: /tmp is shared)."""
    return Path(tempfile.gettempdir()) / f"cnnx-ray-{os.getuid()}"


@contextlib.contextmanager
def artifact_copies():
    """A folder for an actor's copies of the shipped artifacts, removed once they are loaded. Ray ends actors
    with SIGKILL (also an actor still loading when the job is done), so one killed while loading leaves its
    folder: the next actor on the node, and the driver at the end of a job, remove the folders of processes
    that no longer exist."""
    root = copies_root()
    root.mkdir(exist_ok=True)
    sweep_copies()
    folder = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_copies() -> None:
    """Remove this machine's artifact copies whose actor process no longer exists."""
    root = copies_root()
    for stale in root.iterdir() if root.is_dir() else ():
        owner = stale.name.split("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def job_errors(ray):
    """A failure of the job itself (actors that cannot be placed, a lost node, the cluster going away) as
    BackendUnavailable (exit 3). An exception of cnnx's code inside an actor stays what it is, a bug (exit 4);
    what a user can act on comes back from the actors as answers (error entries, or node_error)."""
    from ray.data.exceptions import UserCodeException

    try:
        yield
    except UserCodeException:
        raise
    except ray.exceptions.RayError as exc:
        raise BackendUnavailable(f"the Ray job failed: {first_line(exc)}",
                                 "see the logs of the Ray session (/tmp/ray/session_latest/logs on the head node)"
                                 ) from exc


def node_error(exc: CnnxError, names: dict[str, str]) -> CnnxError:
    """`exc`, raised on a Ray node while loading the shipped artifacts, naming each artifact as the user did
    (`names`: its copy's path on the node -> the path given) and the node."""
    message = exc.message
    for copy, name in names.items():
        message = message.replace(copy, name)
    return type(exc)(f"{message} (on the Ray node {socket.gethostname()})", exc.hint)


BLOCK = "block"  # the column that numbers a job's blocks, in what the actors are handed and in their answers


class BlockActor(ABC):
    """A Ray Data actor of a bulk job: it loads the shipped artifacts once (`load`), then answers each block of
    images it is handed (`answer`), as one pickled object per block, which run_blocks hands on as it was made.
    An actor that could not load the artifacts answers every block with the CnnxError instead, for the driver
    to raise: an exception raised here would reach the driver as text in a Ray error, without its message,
    hint and exit code. A subclass sets what its `load` needs before it calls this __init__, which loads."""

    def __init__(self, artifacts: list, backend: str | None, threads: int, workdir: str):
        import ray

        # The driver's working folder, where the paths the user gave relative to it are: a worker process starts
        # in its node's own folder. A node without that folder (no shared file system) reads absolute paths only.
        with contextlib.suppress(OSError):
            os.chdir(workdir)
        self.backend, self.threads = backend, threads
        self.failure: CnnxError | None = None
        shipped: list[ShippedArtifact] = ray.get(artifacts)  # a list: Ray passes the references, not the bytes
        with artifact_copies() as folder:  # the copies on the node's disk live only while they load
            copies = [s.unpack(folder / str(i)) for i, s in enumerate(shipped)]  # two may share a file name
            try:
                self.load(copies, [s.name for s in shipped])
            except CnnxError as exc:
                self.failure = node_error(exc, {str(copy): s.name for copy, s in zip(copies, shipped)})

    @abstractmethod
    def load(self, copies: list[Path], names: list[str]) -> None:
        """Load the artifacts from their copies on this node (`names`: the paths the user gave)."""

    @abstractmethod
    def answer(self, block: dict) -> Any:
        """The answer to a block (its columns, as numpy arrays)."""

    def __call__(self, block: dict) -> dict:
        # run_blocks counts on Ray Data handing over its blocks whole (from_arrow, batch_size=None), one per call:
        # the row count (-1: rows of several blocks) lets it check that instead of losing or mixing up inputs
        rows = len(block[BLOCK]) if len(set(block[BLOCK].tolist())) == 1 else -1
        return {BLOCK: block[BLOCK][:1], "rows": [rows],
                "answer": [pickle.dumps(self.failure or self.answer(block))]}


def run_blocks(actor: type[BlockActor], artifacts: list[ShippedArtifact], blocks: list[dict[str, list]], *,
               options: RayOptions, gpu: bool, progress: Callable[[int, int], None] | None = None,
               **settings: Any) -> Generator[tuple[int, Any], None, None]:
    """A bulk job on Ray: the blocks (columns of the same length, "image" among them) handed to a pool of
    `actor`s, each built with the shipped `artifacts`, the backend and threads of `options`, and `settings`.
    Yields (the block's index, its answer) as the answers arrive, each block once: the answer of a block that
    Ray ran again after its actor died is dropped, and `progress(images done, images in all)` follows each new
    one. A CnnxError an actor sent back is raised as cnnx raised it there; a block without an answer at the
    end fails the job (BackendUnavailable), so that no input is silently missing."""
    total = sum(len(block["image"]) for block in blocks)
    done: set[int] = set()
    with ray_session(options.address) as ray, job_errors(ray):
        import pyarrow as pa  # it comes with Ray Data

        references = [ray.put(artifact) for artifact in artifacts]
        tables = [pa.table({BLOCK: [k] * len(block["image"]), **block}) for k, block in enumerate(blocks)]
        dataset = ray.data.from_arrow(tables).map_batches(
            actor, batch_size=None, batch_format="numpy",
            fn_constructor_kwargs={"artifacts": references, "backend": options.backend, "threads": options.threads,
                                   "workdir": os.getcwd(), **settings},
            **actor_pool(ray, options, gpu, len(tables)))
        images = 0
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for number, rows, payload in zip(batch[BLOCK], batch["rows"], batch["answer"]):
                answer, key = pickle.loads(payload), int(number)
                if isinstance(answer, CnnxError):  # an actor could not load the artifacts
                    raise answer
                if rows != len(blocks[key]["image"]):
                    raise BackendUnavailable(f"Ray handed an actor {'rows of several blocks' if rows < 0 else rows} "
                                             f"instead of block {key}'s {len(blocks[key]['image'])} images",
                                             "cnnx needs Ray Data to keep the blocks it is given whole; report "
                                             "this with your Ray version")
                if key in done:
                    continue
                done.add(key)
                images += len(blocks[key]["image"])
                if progress:
                    progress(images, total)
                yield key, answer
    if len(done) != len(blocks):
        lost = [image for k, block in enumerate(blocks) if k not in done for image in block["image"]]
        raise BackendUnavailable(f"the Ray job ended without answers for {len(lost)} of {total} images "
                                 f"(e.g. {', '.join(map(str, lost[:3]))})",
                                 "run it again; the Ray logs say what failed")
