"""The `cnnx` command line: parse options, call the library, render a table or JSON.

One module per command group (models, export/check, bench, build/doctor, deploy), each registered here with
`add_command`; rendering lives in render.py, shared helpers in common.py.

Exit codes: 0 ok, 1 a check failed, 2 bad input or usage, 3 a required backend is unavailable,
4 an internal error (a bug: please report it with the --debug traceback)."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from .. import __version__
from ..errors import CnnxError
from . import bench, deploy, export, models, tensorrt
from .common import err_console


class CnnxGroup(click.Group):
    """Turns CnnxError into a message and an exit code; a traceback only with --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CnnxError as exc:
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug: say so plainly, keep the traceback for --debug
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]internal error:[/] {exc.__class__.__name__}: {escape(str(exc))}\n"
                              "run again with `cnnx --debug ...` for the traceback and report it",
                              markup=True, highlight=False)
            ctx.exit(4)


@click.group(cls=CnnxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cnnx")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def cli(debug: bool) -> None:
    """Export, verify, measure and deploy the classic CNNs."""


for command in (models.list_cmd, models.info_cmd, export.export_cmd, export.check_cmd, bench.bench_cmd,
                tensorrt.build_cmd, tensorrt.doctor_cmd, deploy.predict_cmd, deploy.triton_cmd):
    cli.add_command(command)


def main() -> None:
    sys.exit(cli.main(prog_name="cnnx", standalone_mode=True))


if __name__ == "__main__":
    main()
