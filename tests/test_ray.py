"""`cnnx predict --ray` and `cnnx eval --ray` on a real Ray cluster that this module starts on this machine: a
head node and a second node (`ray start --block`, 2 + 1 CPUs), shared by the module's tests and stopped at the
end, also when a test fails. Answers are compared file by file with `cnnx predict` and `cnnx eval` in one process.

Every Ray job runs in a child process with a timeout (`cnnx ...`, or the Python API for the killed-actor test,
which must see the first answers arrive), so a hung job fails its test; this process never connects to Ray.
The cluster has its own temporary folder and auth token, so it neither finds nor disturbs another Ray instance.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cnnx.bulk.cluster import RayOptions, copies_root, sweep_copies
from cnnx.bulk.output import flat_row
from cnnx.cli import cli
from cnnx.data import sample_images
from cnnx.errors import UsageError
from cnnx.eval import artifact_candidate, manifest_candidate
from cnnx.export.pipeline import ExportOptions, export_model

pytestmark = pytest.mark.xdist_group("ray")  # one worker starts the one cluster all these tests share

START_TIMEOUT = 90  # seconds for the cluster to come up (two `ray start` on a loaded 2-core machine)
JOB_TIMEOUT = 180  # seconds for one job: a few dozen images, plus starting the actors (on one pinned core)
HEAD_CPUS, WORKER_CPUS = 2, 1
OBJECT_STORE = 100 * 2**20  # per node; Ray's floor is 75 MiB, the artifacts shipped are ~30 MB
TOPK = 5
BATCH = 3  # images per task: a dozen tasks, so that a killed actor has work in flight


# ---------------------------------------------------------------------------------------------------------------
# The cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Every port a node would otherwise take at a fixed default, free ones: two nodes (and another test run's
    cluster) on one machine must not collide."""
    return [f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


def process_tree(roots: list[int]) -> dict[int, str]:
    """pid -> process title (Ray names its workers `ray::...`) of every descendant of `roots`."""
    parent, title = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):  # a process that ended while we looked
            stat, cmdline = (entry / "stat").read_text(), (entry / "cmdline").read_bytes()
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            title[int(entry.name)] = cmdline.split(b"\0")[0].decode(errors="replace")
    tree, frontier = {}, set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree}
        tree.update({pid: title[pid] for pid in frontier})
    return tree


@dataclass
class Cluster:
    address: str
    nodes: list[subprocess.Popen]

    def actors(self, udf: str) -> dict[int, str]:
        """The processes of this cluster's actors running `udf` (Ray Data names them after it)."""
        prefix = f"ray::MapWorker(MapBatches({udf}))"
        return {pid: t for pid, t in process_tree([n.pid for n in self.nodes]).items() if t.startswith(prefix)}

    def kill_busy_actor(self, udf: str) -> int:
        """SIGKILL an actor while it runs a batch (its title ends in the method it runs); returns its pid."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busy = [pid for pid, t in self.actors(udf).items() if t.endswith(".submit")]
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                return busy[0]
            time.sleep(0.02)
        raise AssertionError(f"no {udf} actor was running a batch: {self.actors(udf)}")

    def stop(self) -> None:
        """`ray start --block` stops the processes it started when it gets SIGTERM; the few that outlive it (a
        node's dashboard and runtime-env agents, at times) are killed by their pids."""
        started = process_tree([n.pid for n in self.nodes])
        for node in reversed(self.nodes):
            with contextlib.suppress(ProcessLookupError):
                node.send_signal(signal.SIGTERM)
        for node in reversed(self.nodes):
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait(timeout=10)
        time.sleep(1)
        for pid, title in process_tree([1]).items():  # orphans are adopted by init
            if started.get(pid) == title:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def start_node(log: Path, *args: str) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--disable-usage-stats",
               f"--object-store-memory={OBJECT_STORE}", *node_ports(), *args]
    # no graceful drain on SIGTERM: it waits up to 30 s for leases a finished job's driver never returns
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)


NODES_UP = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="warning", log_to_driver=False)
while len([n for n in ray.nodes() if n["Alive"]]) < int(sys.argv[2]):
    time.sleep(0.2)
"""


def wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen], logs: list[Path]) -> None:
    """Wait until every `ray start` says it started, then until the head counts `count` live nodes (asked by a
    child: a driver in this process would keep Ray's settings of the moment it was imported)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not all("Ray runtime started" in log.read_text() for log in logs):
        dead = [log.read_text()[-2000:] for node, log in zip(nodes, logs) if node.poll() is not None]
        assert not dead and time.monotonic() < deadline, f"the Ray cluster did not start: {dead}"
        time.sleep(0.2)
    child = subprocess.run([sys.executable, "-c", NODES_UP, address, str(count)], capture_output=True, text=True,
                           timeout=max(1.0, deadline - time.monotonic()))
    assert child.returncode == 0, child.stderr[-3000:]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    from ray.util import get_node_ip_address

    # Token authentication, as Ray does by default, with this cluster's own token: the nodes and the jobs (all
    # children of this process) get it from the environment, not from ~/.ray/auth_token
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    logs = tmp_path_factory.mktemp("ray-logs")
    # the cluster's sessions, sockets and address file, not in /tmp/ray where `ray.init()` would find them later
    # (a short path: a Unix socket's path has at most 107 characters)
    ray_dir = Path(tempfile.mkdtemp(prefix="test-ray-"))
    # Ray binds to this machine's address even when told 127.0.0.1 (it resolves localhost to the node's IP)
    address = f"{get_node_ip_address()}:{free_port()}"
    nodes = []
    running = Cluster(address, nodes)
    try:
        nodes.append(start_node(logs / "head.log", "--head", f"--port={address.rsplit(':', 1)[1]}",
                                f"--temp-dir={ray_dir}", f"--num-cpus={HEAD_CPUS}", "--include-dashboard=false",
                                f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}"))
        nodes.append(start_node(logs / "worker.log", f"--address={address}", f"--num-cpus={WORKER_CPUS}"))
        wait_for_nodes(address, 2, nodes, [logs / "head.log", logs / "worker.log"])
        yield running
    finally:
        running.stop()
        shutil.rmtree(ray_dir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def cnnx_child(*args, timeout: float = JOB_TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`cnnx ARGS...` as a user runs it, in a child process, bounded in time."""
    return subprocess.run([sys.executable, "-m", "cnnx", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


# ---------------------------------------------------------------------------------------------------------------
# Artifacts and images


@pytest.fixture(scope="module")
def artifacts(nin_onnx, tmp_path_factory) -> dict[str, Path]:
    """NiN fp32 (the session's), and fp16 of other weights (seed 1), so that eval has top-1 changes to list."""
    out = tmp_path_factory.mktemp("ray-artifacts")
    [other] = export_model(ExportOptions("nin", precisions=("fp16",), seed=1, out_dir=out, check=False))
    return {"fp32": nin_onnx, "fp16-other": other.path}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    """What `cnnx predict` is given: a folder of the shipped photos plus a truncated JPEG, and a glob URI of
    scikit-image's photos (read through pyarrow's file systems, as a bucket would be): 33 real images (with
    scikit-image 0.26), 1 bad."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    for photo in sample_images():
        shutil.copy(photo, folder)
    (folder / "corrupt.jpg").write_bytes(sample_images()[3].read_bytes()[:600])
    return [str(folder), f"file://{Path(skimage.data.__file__).parent}/*.png"]


def cnnx_here(*args):
    """`cnnx ARGS...` in this process (no Ray involved): click's Result."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def one_process(artifacts, inputs) -> dict:
    """`cnnx predict --json` in one process, the answers the Ray runs must equal."""
    run = cnnx_here("predict", artifacts["fp32"], *inputs, "--topk", TOPK, "--json")
    assert run.exit_code == 2, run.stderr[-3000:]  # the corrupt JPEG
    report = json.loads(run.stdout)
    assert report["classified"] > 20 and report["failed"] == 1
    return report


def artifact_copies() -> set[Path]:
    """The folders in which actors unpack the artifacts they were sent."""
    return set(copies_root().glob("*")) if copies_root().is_dir() else set()


@pytest.fixture(scope="module")
def on_ray(cluster, artifacts, inputs, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, set[Path]]:
    """`cnnx predict --ray ADDRESS --output FILE.parquet` on the cluster, and the artifact copies it left."""
    output = tmp_path_factory.mktemp("ray-predict") / "answers.parquet"
    before = artifact_copies()
    run = cnnx_child("predict", artifacts["fp32"], *inputs, "--topk", TOPK, "--batch", BATCH, "--ray", cluster.address,
                     "--output", output)
    # An actor removes its copy once loaded; one the pool ends while it is still loading (SIGKILL) leaves it,
    # and the next actor or job on the node removes it once that process is gone: no copy stays for long.
    deadline = time.monotonic() + 60
    while (left := artifact_copies() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
        sweep_copies()
    return run, output, left


# ---------------------------------------------------------------------------------------------------------------
# On the cluster


def test_predict_on_ray_equals_one_process_file_by_file(on_ray, one_process):
    run, output, left = on_ray
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert not left, "the actors left copies of the artifact on the nodes' disks"
    rows = pq.read_table(output).to_pylist()
    expected = [flat_row(entry, TOPK) for entry in one_process["results"]]
    assert [r["image"] for r in rows] == [r["image"] for r in expected]  # each input once, in input order
    assert rows == expected  # labels, class indices and probabilities, bit for bit


def test_a_bad_image_is_an_error_row_and_exit_2_without_losing_the_rest(on_ray, one_process):
    run, output, _ = on_ray
    assert run.returncode == 2, run.stderr[-3000:]
    rows = pq.read_table(output).to_pylist()
    failed = [r for r in rows if r["error"]]
    assert [Path(r["image"]).name for r in failed] == ["corrupt.jpg"]
    assert "not a readable image" in failed[0]["error"] and failed[0]["label_1"] is None
    assert len(rows) == len(one_process["results"]) and all(r["label_1"] for r in rows if not r["error"])
    assert f"{len(rows) - 1} image(s) classified, 1 failed" in run.stdout
    assert "corrupt.jpg" in run.stderr


def test_relative_paths_are_read_from_the_drivers_folder(cluster, artifacts, inputs, one_process):
    """The nodes' processes have working folders of their own (here: where `ray start` ran); a path given
    relative to where `cnnx predict --ray` runs names the same file on the actors."""
    folder = Path(inputs[0])
    run = cnnx_child("predict", artifacts["fp32"], folder.name, "--topk", TOPK, "--batch", BATCH, "--ray",
                     cluster.address, "--json", cwd=folder.parent)
    assert run.returncode == 2, run.stderr[-3000:]  # the corrupt JPEG only
    answers = json.loads(run.stdout)["results"]
    expected = [e for e in one_process["results"] if Path(e["image"]).parent == folder]
    assert [a["image"] for a in answers] == [str(Path(folder.name) / Path(e["image"]).name) for e in expected]
    assert [a.get("predictions") for a in answers] == [e.get("predictions") for e in expected]


KILLED_MID_RUN = """
import json, sys
from cnnx.bulk import RayOptions, predictions

artifact, address, batch, topk, *inputs = sys.argv[1:]
job = predictions(artifact, inputs, topk=int(topk), options=RayOptions(address=address, batch=int(batch)))
said = []

def progress(done, total):  # on the first answers: tell the test, and wait until it has killed an actor
    if not said:
        said.append(print("answers", done, total, flush=True))
        sys.stdin.readline()

answers = [entry for batch in job.run(progress) for entry in batch]
print(json.dumps(answers))
"""


def test_a_killed_actor_loses_and_duplicates_no_image(cluster, artifacts, inputs, one_process):
    """SIGKILL one actor's process while it runs a batch, after the first answers came in: Ray restarts it and
    runs its batches again; the answers still hold each input exactly once, equal to one process's."""
    job = subprocess.Popen([sys.executable, "-c", KILLED_MID_RUN, artifacts["fp32"], cluster.address, str(BATCH),
                            str(TOPK), *inputs], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([job.stdout], [], [], JOB_TIMEOUT)  # the job's first answers, or its end
        assert ready, f"no answers in {JOB_TIMEOUT} s"
        first = job.stdout.readline().split()
        assert first[:1] == ["answers"], job.stderr.read()[-3000:]
        done, total = int(first[1]), int(first[2])
        killed = cluster.kill_busy_actor("ImageClassifier")
        out, err = job.communicate("go\n", timeout=JOB_TIMEOUT)
    finally:
        job.kill()
    assert job.returncode == 0, err[-3000:]
    assert done < total, "the actor was killed after the last batch"
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    assert json.loads(out) == one_process["results"]


PREDICT_TO_FILE = """
import dataclasses, json, sys
from cnnx.bulk import RayOptions, predict

artifact, address, batch, topk, output, *inputs = sys.argv[1:]
summary = predict(artifact, inputs, output, topk=int(topk), options=RayOptions(address=address, batch=int(batch)))
print(json.dumps(dataclasses.asdict(summary)))
"""


def test_python_predict_writes_what_one_process_answers(cluster, artifacts, inputs, one_process, tmp_path):
    """`cnnx.bulk.predict`, the Python API (and what `cnnx predict --ray --output` calls): the file holds one
    process's answers in input order, and the summary counts them."""
    output = tmp_path / "answers.jsonl"
    run = subprocess.run([sys.executable, "-c", PREDICT_TO_FILE, artifacts["fp32"], cluster.address, str(BATCH),
                          str(TOPK), output, *inputs], capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert run.returncode == 0, run.stderr[-3000:]
    expected = one_process["results"]
    assert [json.loads(line) for line in output.read_text().splitlines()] == expected
    summary = json.loads(run.stdout.splitlines()[-1])
    assert (summary["output"], summary["model"], summary["backend"]) == (str(output), one_process["model"],
                                                                         one_process["backend"])
    assert summary["images"] == len(expected) and summary["failed"] == 1
    assert summary["failures"] == [e for e in expected if "error" in e]


REFUSED_ON_THE_NODES = """
import json, sys
from cnnx.bulk.cluster import BlockActor, RayOptions, ShippedArtifact, run_blocks
from cnnx.errors import BackendUnavailable

class Refusing(BlockActor):  # as on a node without the artifact's backend
    def load(self, copies, names):
        raise BackendUnavailable(f"cannot run '{copies[0]}' here", "install the backend on every node")

    def answer(self, block):
        raise AssertionError("an actor without its artifact answered")

artifact, address = sys.argv[1:]
try:
    list(run_blocks(Refusing, [ShippedArtifact.read(artifact)], [{"image": ["a.jpg", "b.jpg"]}, {"image": ["c.jpg"]}],
                    options=RayOptions(address=address, actors=1), gpu=False))
except BackendUnavailable as exc:
    print(json.dumps([type(exc).__name__, exc.exit_code, exc.message, exc.hint]))
"""


def test_an_actor_that_cannot_load_the_artifact_fails_the_job_with_its_error(cluster, artifacts):
    """What an actor raised while loading reaches the driver as cnnx raised it: its type (exit code), message
    (naming the artifact as the user did, and the node) and hint."""
    run = subprocess.run([sys.executable, "-c", REFUSED_ON_THE_NODES, artifacts["fp32"], cluster.address],
                         capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert run.returncode == 0 and run.stdout.strip(), run.stderr[-3000:]
    kind, code, message, hint = json.loads(run.stdout.splitlines()[-1])
    assert (kind, code, hint) == ("BackendUnavailable", 3, "install the backend on every node")
    assert message.startswith(f"cannot run '{artifacts['fp32']}' here (on the Ray node "), message


def test_eval_on_ray_equals_cnnx_eval(cluster, artifacts, one_process, tmp_path):
    """Labels: the fp32 artifact's own top-1 for two images in three, its second guess for the third, so that
    top-1 and top-5 differ; the fp16 artifact of other weights changes many top-1s."""
    data = tmp_path / "labeled"
    for n, entry in enumerate(e for e in one_process["results"] if "error" not in e):
        label = entry["predictions"][1 if n % 3 == 2 else 0]["index"]
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        source = entry["image"].removeprefix("file://")
        shutil.copy(source, data / str(label) / f"{n:02d}-{Path(source).name}")
    paths = [artifacts["fp32"], artifacts["fp16-other"]]
    alone = cnnx_here("eval", *paths, "--data", data, "--json")
    ray = cnnx_child("eval", *paths, "--data", data, "--json", "--batch", BATCH, "--ray", cluster.address)
    assert alone.exit_code == ray.returncode == 1, ray.stderr[-3000:]  # the other weights keep < 99 %
    expected, got = json.loads(alone.stdout), json.loads(ray.stdout)
    assert 0 < expected["rows"][0]["top1"] < expected["rows"][0]["top5"] == 1
    assert expected["rows"][1]["changed"] > 0
    for row, ray_row in zip(expected["rows"], got["rows"]):
        for key in ("top1", "top5", "delta_top1", "delta_top5", "retained", "passed", "changed", "became_wrong",
                    "became_right", "changed_images", "images"):
            assert ray_row[key] == row[key], key
        if row["sqnr_db"] is not None:  # sums over other batches: the same up to rounding
            assert ray_row["sqnr_db"] == pytest.approx(row["sqnr_db"], rel=1e-9)
    assert got["images"] == expected["images"] == len(one_process["results"]) - 1


# ---------------------------------------------------------------------------------------------------------------
# Before any work, and without Ray


def test_an_artifact_that_fails_its_manifest_check_fails_before_any_work(run_cli, artifacts, inputs, tmp_path):
    """The driver checks the artifact before it connects: the address here has no cluster behind it, so any
    attempt to schedule would fail with a connection error instead."""
    tampered = tmp_path / artifacts["fp32"].name
    shutil.copy(artifacts["fp32"].with_suffix(".json"), tampered.with_suffix(".json"))
    data = bytearray(artifacts["fp32"].read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    labeled = tmp_path / "labeled" / "0"
    labeled.mkdir(parents=True)
    shutil.copy(sample_images()[0], labeled)
    nowhere = f"127.0.0.1:{free_port()}"
    for command in (["predict", tampered, *inputs, "--ray", nowhere],
                    ["eval", tampered, "--data", labeled.parent, "--ray", nowhere]):
        started = time.monotonic()
        result = run_cli(*command)
        assert result.exit_code == 2, result.output
        assert "does not match its manifest" in result.stderr and "Ray" not in result.stderr
        assert time.monotonic() - started < 20


def test_predict_refuses_before_any_work_what_cnnx_load_refuses(run_cli, artifacts, inputs, tmp_path):
    """A manifest passed as the artifact, and a plan whose manifest cannot say how to feed it, are refused by the
    driver as `cnnx.load` refuses them, before it connects (the address has no cluster behind it)."""
    from plans import plan_manifest, write_fake_plan

    bare = write_fake_plan(tmp_path, replace(plan_manifest(), output=None))
    nowhere = f"127.0.0.1:{free_port()}"
    for artifact, said in ((artifacts["fp32"].with_suffix(".json"), "manifest"),
                           (bare, "records no output tensor or preprocessing")):
        result = run_cli("predict", artifact, *inputs, "--ray", nowhere)
        assert result.exit_code == 2 and said in result.stderr and "Ray" not in result.stderr, result.output


def test_the_eval_driver_reads_what_it_needs_from_the_manifests(artifacts):
    """`cnnx eval --ray`'s driver opens no backend (it may have none: a TensorRT plan from a CPU-only head node):
    what it reads from an artifact's manifest is what loading the artifact tells, and it does not run."""
    for path in artifacts.values():
        read, loaded = manifest_candidate(path, "onnxruntime"), artifact_candidate(path, "onnxruntime")
        with loaded.run:  # the Predictor: its session closed at the end
            assert replace(read, run=loaded.run) == loaded  # name, model, precision, backend, classes, ...
        with pytest.raises(RuntimeError, match="does not run"):
            read.run(None)


def test_an_address_without_a_cluster_fails_at_once(run_cli, artifacts, inputs):
    started = time.monotonic()
    result = run_cli("predict", artifacts["fp32"], *inputs, "--ray", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 3 and "nothing answers at the Ray address" in result.stderr
    assert time.monotonic() - started < 20  # ray.init alone retries for minutes


def test_without_ray_the_flag_says_what_to_install(run_cli, artifacts, inputs, monkeypatch, tmp_path):
    labeled = tmp_path / "labeled" / "0"
    labeled.mkdir(parents=True)
    shutil.copy(sample_images()[0], labeled)
    for package in ("ray", "pyarrow"):  # both come with the ray extra: `import` fails as if neither were installed
        monkeypatch.setitem(sys.modules, package, None)
    for command in (("predict", artifacts["fp32"], *inputs), ("eval", artifacts["fp32"], "--data", labeled.parent)):
        result = run_cli(*command, "--ray")
        assert result.exit_code == 3, result.output
        assert "pip install 'cnnx[ray]'" in result.stderr and "Traceback" not in result.stderr


def test_ray_options_from_python_are_checked():
    """What the command line's --actors/--batch/--threads refuse, RayOptions refuses too (the Python API)."""
    for actors in (None, 3, (1, 2), (2, 2)):
        RayOptions(actors=actors).check()
    for actors in (0, True, (2,), (1, 2, 3), (3, 1), (0, 2), 2.5):
        with pytest.raises(UsageError, match="actors must be"):
            RayOptions(actors=actors).check()
    with pytest.raises(UsageError, match="batch must be"):
        RayOptions(batch=0).check()


def test_cnnx_imports_and_predicts_without_importing_ray(artifacts):
    code = ("import sys, cnnx, cnnx.bulk, cnnx.cli\nfrom cnnx.cli import cli\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]


def test_ray_options_are_checked_on_the_command_line(run_cli, artifacts, inputs):
    result = run_cli("predict", artifacts["fp32"], "--ray", *inputs)  # --ray took the folder as its address
    assert result.exit_code == 2 and "put --ray after the images" in result.stderr
    result = run_cli("predict", artifacts["fp32"], *inputs, "--actors", "2")
    assert result.exit_code == 2 and "--actors applies to --ray only" in result.stderr
    result = run_cli("predict", artifacts["fp32"], *inputs, "--ray", "--actors", "3-1")
    assert result.exit_code == 2 and "MIN-MAX" in result.stderr
    result = run_cli("eval", artifacts["fp32"], "--data", Path(inputs[0]), "--ray", "--model", "nin")
    assert result.exit_code == 2 and "apply without --ray" in result.stderr


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predict_output_files_hold_what_json_shows(run_cli, artifacts, inputs, one_process, tmp_path, suffix):
    """`--output` in one process (the writer the Ray runs use): every answer, in input order, then exit 2."""
    output = tmp_path / f"answers{suffix}"
    result = run_cli("predict", artifacts["fp32"], *inputs, "--topk", TOPK, "--output", output)
    expected = one_process["results"]
    assert result.exit_code == 2 and f"{len(expected) - 1} image(s) classified, 1 failed" in result.stdout
    if suffix == ".jsonl":
        assert [json.loads(line) for line in output.read_text().splitlines()] == expected
    elif suffix == ".parquet":
        assert pq.read_table(output).to_pylist() == [flat_row(e, TOPK) for e in expected]
    else:
        import csv

        with output.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
        flat = [{k: "" if v is None else str(v) for k, v in flat_row(e, TOPK).items()} for e in expected]
        assert rows == flat  # probabilities written with repr: they read back exactly
    assert [p.name for p in tmp_path.iterdir()] == [output.name]  # no temporary file left behind


def test_an_unknown_output_suffix_fails_before_any_work(run_cli, artifacts, inputs, tmp_path):
    result = run_cli("predict", artifacts["fp32"], *inputs, "--output", tmp_path / "answers.xlsx")
    assert result.exit_code == 2 and ".csv, .parquet or .jsonl" in result.stderr
    assert not list(tmp_path.iterdir())


def test_an_unwritable_output_fails_before_any_work(run_cli, artifacts, inputs, tmp_path):
    """--output in a folder that cannot be made (a file is in its place): refused before anything connects (the
    address has no cluster behind it, which would be exit 3) and before the artifact runs."""
    (tmp_path / "taken").write_text("a file, not a folder")
    result = run_cli("predict", artifacts["fp32"], *inputs, "--output", tmp_path / "taken" / "answers.csv",
                     "--ray", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2 and "--output" in result.stderr and "classified" not in result.output
