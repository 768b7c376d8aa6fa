"""What every command module shares: the consoles, JSON output, progress, option parsing helpers."""

from __future__ import annotations

import contextlib
import json
import sys

import click
from rich.console import Console
from rich.markup import escape

from ..errors import UsageError

# Rich wraps at 80 columns when output is not a terminal; tables of model names need more. Plain lines are
# printed with soft_wrap (never broken), so commands copied from a CI log still run.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
SEED = click.IntRange(0, 2**32 - 1)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def say(text: str, **style) -> None:
    """Print plain text (file names, commands) on stdout: no markup, no highlighting."""
    console.print(text, highlight=False, markup=False, soft_wrap=True, **style)


class StageProgress:
    """A spinner on stderr naming the current stage (stdout stays clean for --json)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and err_console.is_terminal
        self.status = err_console.status("") if self.enabled else None
        self.quiet = not enabled
        self.stage = ""

    def __enter__(self):
        if self.status:
            self.status.__enter__()
        return self

    def __exit__(self, *exc):
        if self.status:
            self.status.__exit__(*exc)

    def __call__(self, stage: str) -> None:
        self.stage = stage
        if self.status:
            self.status.update(escape(stage))  # stages name files: brackets in a path are not markup
        elif not self.quiet:
            err_console.print(f"- {stage}", style="dim", highlight=False, markup=False, soft_wrap=True)

    @contextlib.contextmanager
    def paused(self):
        """Stop the spinner while something else draws on the terminal (a download's progress bar), leaving
        the current stage printed above it."""
        if self.status:
            self.status.stop()
            err_console.print(self.stage, highlight=False, markup=False)
        try:
            yield
        finally:
            if self.status:
                self.status.start()


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")(fn)


def _pretrained_value(ctx, param, value):
    """`--pretrained` takes an optional value, so `--pretrained resnet50` would read the model name as one."""
    if value is None:
        return None
    from ..weights.pretrained import version_names

    if value.strip().lower() not in version_names():
        raise click.BadParameter(f"'{value}' is not a weights version: use plain --pretrained (the publisher's "
                                 "default), v1 or v2, after the model name (or write --pretrained=v2)")
    return value


def pretrained_option(fn):
    """`--pretrained [v1|v2]`: the publisher's ImageNet weights by name, downloaded once into the cache and
    sha256-verified (cnnx.weights.resolve_weights does the rest)."""
    return click.option(
        "--pretrained", is_flag=False, flag_value="default", default=None, metavar="[v1|v2]",
        callback=_pretrained_value,
        help="Load the publisher's ImageNet weights (downloaded once into $CNNX_HOME or ~/.cache/cnnx, "
             "sha256-verified): plain --pretrained = the default (torchvision's IMAGENET1K_V2 where it exists, "
             "else V1), or v1 / v2. Not with --weights.")(fn)


def head_options(fn):
    """A fine-tuned network's classifier and resolution: --num-classes, --input-size, --resize."""
    fn = click.option("--resize", type=click.IntRange(1), default=None,
                      help="Resize the shorter side to this before the center crop (default: round(input size "
                           "/ 0.875), or the model's own at its native size).")(fn)
    fn = click.option("--input-size", type=click.IntRange(1), default=None,
                      help="Input resolution the network was trained at (center crop N x N; default: the "
                           "model's native size).")(fn)
    return click.option("--num-classes", type=click.IntRange(1), default=None,
                        help="Outputs of the classifier (default: read from the checkpoint's head, else 1000).")(fn)


def threshold_options(fn):
    """Options that override the default parity thresholds of every artifact checked."""
    for flag, help_text in (
        ("--max-rel", "Fail when max |diff| / max |reference| exceeds this."),
        ("--min-cosine", "Fail when the lowest per-sample cosine similarity is below this."),
        ("--min-sqnr", "Fail when SQNR (dB) is below this."),
        ("--min-top1", "Fail when top-1 agreement (0..1) is below this."),
        ("--min-top5", "Fail when top-5 overlap (0..1) is below this."),
    ):
        fn = click.option(flag, type=float, default=None, help=help_text)(fn)
    return fn


def threshold_overrides(options: dict) -> dict[str, float]:
    """The parity limits given on the command line, by parity.Thresholds field name."""
    given = {"max_rel": options.get("max_rel"), "min_cosine": options.get("min_cosine"),
             "min_sqnr_db": options.get("min_sqnr"), "min_top1": options.get("min_top1"),
             "min_top5": options.get("min_top5")}
    return {k: v for k, v in given.items() if v is not None}


def thresholds_from(options: dict, precision: str):
    """The default thresholds of `precision`, with any command-line overrides applied (None: no override)."""
    from ..checking import thresholds_for

    overrides = threshold_overrides(options)
    return thresholds_for(precision, overrides) if overrides else None


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma-separated choice list, duplicates dropped; unknown or no entries are a UsageError."""
    items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        raise UsageError(f"unknown {what} {', '.join(unknown) or '(none given)'}", f"choose from {', '.join(allowed)}")
    return items


def parse_batches(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive batch sizes, e.g. "1,8,32"; empty entries are an error."""
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise UsageError(f"--batch needs comma-separated positive integers, got '{text}'", "e.g. --batch 1,8,32")
    return tuple(dict.fromkeys(int(part) for part in parts))


def parse_precisions(fp16: bool, precision: str | None, int8: bool = False) -> tuple[str, ...]:
    chosen = [p.strip().lower() for p in (precision or "").split(",") if p.strip()]
    chosen += ["fp16"] * fp16 + ["int8"] * int8
    return tuple(dict.fromkeys(chosen)) or ("fp32",)
