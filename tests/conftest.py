import pytest
from click.testing import CliRunner

from cnnx.cli import cli


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
    from trained_network import make_trained_digits

    return make_trained_digits(tmp_path_factory.mktemp("trained-digits"))
