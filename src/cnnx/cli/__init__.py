"""The `cnnx` command line: parse options, call the library, render a table or JSON.

One module per command group (models, export/check, bench, build/doctor, deploy, eval), each registered here with
`add_command`; rendering lives in render.py, shared helpers in common.py.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 a required backend (or package) is unavailable,
4 an internal error (a bug: please report it with the --debug traceback), 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import sys
import traceback

import click
from rich.markup import escape

from .. import __version__
from ..errors import CnnxError
from . import bench, deploy, export, models, tensorrt
from .common import err_console
from .eval import eval_cmd

# Packages that only the commands building models need; an inference-only install (README) lacks them.
BUILD_PACKAGES = ("torch", "onnx", "onnxscript", "onnxsim", "safetensors")


def report(label: str, message: str, hint: str | None = None) -> None:
    err_console.print(f"[bold red]{label}:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", markup=True, highlight=False, soft_wrap=True)


class CnnxGroup(click.Group):
    """Turns CnnxError into a message and an exit code; a traceback only with --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BaseException as exc:
            if isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            if ctx.params.get("debug"):
                traceback.print_exc()  # and then the same message and exit code: scripts branch on the code
            label, message, hint, code = describe_failure(exc)
            report(label, message, hint)
            ctx.exit(code)


def describe_failure(exc: BaseException) -> tuple[str, str, str | None, int]:
    """(label, message, hint, exit code) for an exception that reached the command line."""
    if isinstance(exc, CnnxError):
        return "error", exc.message, exc.hint, exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        # every file cnnx writes goes through a temporary name that an interruption removes
        return "interrupted", "stopped by Ctrl-C; nothing half-written was left behind", None, 130
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in BUILD_PACKAGES:
        return ("error", f"this command needs the '{exc.name}' package, which is not installed (an inference-only "
                "install runs artifacts with `cnnx predict` and `cnnx.load`, but builds no models)",
                "install PyTorch first (its CPU build: pip install torch --index-url "
                "https://download.pytorch.org/whl/cpu), then the full cnnx: pip install cnnx", 3)
    return ("internal error", f"{exc.__class__.__name__}: {exc}",
            "run again with `cnnx --debug ...` for the traceback and report it", 4)


@click.group(cls=CnnxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cnnx")
@click.option("--debug", is_flag=True, default=False, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Export, verify, measure and deploy the classic CNNs."""


for command in (models.list_cmd, models.info_cmd, export.export_cmd, export.check_cmd, bench.bench_cmd,
                tensorrt.build_cmd, tensorrt.doctor_cmd, deploy.predict_cmd, deploy.triton_cmd, eval_cmd):
    cli.add_command(command)


def main() -> None:
    sys.exit(cli.main(prog_name="cnnx", standalone_mode=True))


if __name__ == "__main__":
    main()
