"""What the scripts that write the docs' tables share: the stamp naming machine and date, the rewrite of a
generated block (`<!-- MARKER:BEGIN -->` ... `<!-- MARKER:END -->`) inside a hand-written page, and the test
suite's trained network."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from cnnx.hardware import describe, machine_info

DOCS = Path(__file__).resolve().parents[1] / "docs"
TESTS = DOCS.parent / "tests"


def stamp(threads: int | None = None) -> str:
    """'Machine: <CPU model, cores, AVX-512/VNNI/AMX flags[, GPU]>; <date>': every results page starts with one."""
    return f"Machine: {describe(machine_info(threads))}; {datetime.date.today().isoformat()}."


def publish(page: str, marker: str, content: str, write: bool) -> None:
    """Replace the `marker` block of docs/`page` with `content` when `write`, else print the content."""
    if not write:
        print(content)
        return
    path = DOCS / page
    text, count = re.subn(rf"(<!-- {marker}:BEGIN -->\n).*?(<!-- {marker}:END -->)",
                          lambda m: m[1] + content + "\n" + m[2], path.read_text(), flags=re.S)
    if count != 1:
        raise SystemExit(f"{path}: expected one {marker} block, found {count}")
    path.write_text(text)
    print(f"wrote the {marker} block of {path}")


def trained_network_module():
    """tests/trained_network.py (the resnet18 trained on real digits), imported by path: tests/ is not a package."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("trained_network", TESTS / "trained_network.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while the module runs
    spec.loader.exec_module(module)
    return module
