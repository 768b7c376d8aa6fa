"""The documentation site cannot drift from the code: it builds strictly, its shell blocks run, its generated
tables equal what their scripts write now.

Shell blocks of the quickstart and the command pages run in page order in one scratch folder (a clone's view:
`src/` is linked in, so `src/cnnx/data/samples` exists), as a user would type them. A block preceded by
`<!-- docs-test: skip: REASON -->` is not run (it needs a GPU, the network or the user's own data), and one
preceded by `<!-- docs-test: exit N: REASON -->` must exit N where TensorRT or a GPU is missing (0 where both
exist); the options of every `cnnx` command shown, run or not, must exist.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cnnx.backends import BACKENDS
from cnnx.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# the pages whose shell blocks run, in the order a reader meets them (mkdocs.yml's nav)
RUN_PAGES = ["quickstart.md", "commands/list.md", "commands/info.md", "commands/export.md", "commands/check.md",
             "commands/eval.md", "commands/bench.md", "commands/build.md", "commands/doctor.md",
             "commands/predict.md", "commands/triton.md"]
BLOCK = re.compile(r"(?:<!-- docs-test: (?P<how>skip|exit \d+): (?P<why>[^>]*?) -->\n)?```bash\n(?P<body>.*?)```",
                   re.S)

pytestmark = pytest.mark.xdist_group("docs")  # one worker runs the pages in order, in one folder


@dataclass
class ShellBlock:
    page: str
    how: str | None  # None: run, must succeed; "skip"; "exit N"
    why: str | None
    body: str

    def commands(self) -> list[str]:
        """The block's command lines, continuation lines joined."""
        return [line for line in self.body.replace("\\\n", " ").splitlines() if line.strip()]


def shell_blocks(page: str) -> list[ShellBlock]:
    return [ShellBlock(page, m["how"], m["why"], m["body"]) for m in BLOCK.finditer((DOCS / page).read_text())]


def test_the_site_builds_strictly_with_every_option_table(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    export_page = (site / "commands" / "export" / "index.html").read_text()
    for option in ("--calib-data", "--int8-target", "--precision"):  # generated from the click command itself
        assert option in export_page
    assert "def load" not in (site / "reference" / "api" / "index.html").read_text()  # rendered, not source
    assert "Predictor" in (site / "reference" / "api" / "index.html").read_text()


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    nav = set(re.findall(r"([\w/-]+\.md)", (ROOT / "mkdocs.yml").read_text()))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert nav == pages


@pytest.mark.parametrize("page", [*RUN_PAGES, "../README.md"])
def test_every_cnnx_command_shown_uses_options_that_exist(page):
    blocks = shell_blocks(page)
    assert blocks, f"{page} shows no shell block"
    for block in blocks:
        assert block.how is None or block.why.strip(), f"{page}: a docs-test marker without its reason"
        for line in block.commands():
            for words in simple_commands(line):
                if words[:1] != ["cnnx"] or len(words) < 2:
                    continue
                command = cli.commands.get(words[1])
                assert command, f"{page}: unknown command in {line!r}"
                known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
                for word in words[2:]:
                    if word.startswith("--"):
                        assert word.split("=")[0] in known, f"{page}: {word} is no option of cnnx {words[1]}"


def simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command of a shell line (split at &&, ||, |, ;, redirections dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token and set(token) <= set("&|;<>()"):
            commands.append(words)
            words = []
        else:
            words.append(token)
    return [*commands, words]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One scratch folder for all pages, as a clone: `src/` linked in, cnnx's cache inside."""
    folder = tmp_path_factory.mktemp("docs-run")
    (folder / "src").symlink_to(ROOT / "src")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_shell_blocks_of_the_page_run_as_written(page, workdir):
    env = {**os.environ, "CNNX_HOME": str(workdir / "cnnx-home"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CNNX_HOLD_AT", None)
    for block in shell_blocks(page):
        if block.how == "skip":
            continue
        if block.how is None:
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.body], cwd=workdir, env=env,
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"{page}: this block failed ({done.returncode}):\n{block.body}\n" \
                                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            continue
        # `exit N` marks what a CPU-only machine answers (TensorRT or a GPU missing); where both exist, it works
        expected = int(block.how.split()[1]) if BACKENDS["tensorrt"].unavailable_reason() else 0
        for line in block.commands():
            done = subprocess.run(["bash", "-c", line], cwd=workdir, env=env, capture_output=True, text=True)
            assert done.returncode == expected, f"{page}: {line!r} exited {done.returncode}, the page says " \
                                                f"{expected}:\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr


def load_script(name: str):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "scripts"))


@pytest.mark.parametrize(("page", "marker", "script", "function"), [
    ("guides/zoo.md", "ZOO", "zoo_table", "zoo_markdown"),
    ("guides/weights.md", "PRETRAINED", "pretrained_table", "pretrained_markdown"),
])
def test_generated_tables_equal_what_their_scripts_write(page, marker, script, function):
    text = (DOCS / page).read_text()
    block = text.split(f"<!-- {marker}:BEGIN -->\n")[1].split(f"<!-- {marker}:END -->")[0]
    assert block.strip() == getattr(load_script(script), function)(), f"run: python scripts/{script}.py --write"


def test_the_manifest_page_names_every_manifest_field():
    from dataclasses import fields

    from cnnx.manifest import OnnxManifest, PlanManifest

    page = (DOCS / "guides" / "manifest.md").read_text()
    for kind in (OnnxManifest, PlanManifest):
        missing = [f.name for f in fields(kind) if f"`{f.name}`" not in page]
        assert not missing, f"docs/guides/manifest.md does not describe {kind.__name__} fields {missing}"
