import pytest
from click.testing import CliRunner

from cnnx.cli import cli


@pytest.fixture
def run_cli():
    """Run `cnnx ARGS...` in-process; returns click's Result (exit_code, stdout, stderr)."""

    def run(*args):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run
