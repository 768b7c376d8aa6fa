"""What the scripts that write the docs' tables share: the stamp naming machine and date, and the rewrite of a
generated block (`<!-- MARKER:BEGIN -->` ... `<!-- MARKER:END -->`) inside a hand-written page."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from cnnx.hardware import describe, machine_info

DOCS = Path(__file__).resolve().parents[1] / "docs"


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
