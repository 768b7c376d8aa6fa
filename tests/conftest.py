import os
import shutil
import tempfile

import pytest
from click.testing import CliRunner

from cnnx.cli import cli

# Measured on a full run: 0.9 GB of session/module fixtures, plus one test's own folder at a time (up to 1.5 GB:
# a VGG in three precisions); pyproject.toml keeps no folder of a passing test.
SUITE_DISK_NEED = 3 * 2**30
_free_at_start: list[int] = []


def pytest_configure(config):
    """Under xdist each worker computes on its own share of the CPUs. Unpinned, every worker's torch and ONNX
    Runtime start one thread per core, and two workers' spinning thread pools on two cores ran the trained
    network's tests 8x slower than alone (420 s against 54 s). Threads and subprocesses a worker starts
    inherit its CPUs; torch and ONNX Runtime size their pools by them."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0))
    if worker and count > 1 and len(cpus) >= count:
        mine = cpus[int(worker.removeprefix("gw")) :: count]
        os.sched_setaffinity(0, mine)
        import torch

        torch.set_num_threads(len(mine))


def pytest_collection_finish(session):
    """A test's xdist_group keeps it on the worker that runs its group (and makes the group's fixture once) only
    when pytest-xdist can rename its node id; pytest 9.2 broke that silently (pyproject.toml pins pytest)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        grouped = [item for item in session.items if item.get_closest_marker("xdist_group")]
        if grouped and "@" not in grouped[0].nodeid:
            raise pytest.UsageError(f"pytest-xdist's xdist_group has no effect with pytest {pytest.__version__}: "
                                    "install the test extra's pytest (pip install -e '.[test]')")


def pytest_sessionstart(session):
    _free_at_start.append(shutil.disk_usage(tempfile.gettempdir()).free)


def pytest_terminal_summary(terminalreporter):
    """Failures from a full disk look like defects (CI once lost a run to it): say so at the end of the log."""
    if _free_at_start and _free_at_start[0] < SUITE_DISK_NEED:
        terminalreporter.write_line(
            f"note: the temporary folder's disk had {_free_at_start[0] / 2**30:.1f} GiB free when the suite started; "
            f"it needs about {SUITE_DISK_NEED / 2**30:.0f} GiB: 'No space left on device' failures are the disk's")


@pytest.fixture
def run_cli():
    """Run `cnnx ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def nin_onnx(tmp_path_factory):
    """NiN at fp32 (seeded weights, no parity check), exported once per session: the Triton tests share it."""
    from cnnx.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("nin-onnx")
    return export_model(ExportOptions("nin", precisions=("fp32",), out_dir=out, check=False))[0].path


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """cnnx's resnet18 trained from scratch on real handwritten digits (tests/trained_network.py), once per
    test session: its checkpoint, labels file, held-out digits (class folders) and calibration digits."""
    from pathlib import Path

    from trained_network import make_trained_digits

    # for iterating on these tests only: the checkpoint an earlier session wrote, instead of training again
    reuse = os.environ.get("CNNX_TEST_DIGITS_WEIGHTS")
    return make_trained_digits(tmp_path_factory.mktemp("trained-digits"), Path(reuse) if reuse else None)
