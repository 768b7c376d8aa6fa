"""Write the zoo table of the README from the registry (so it is never typed by hand).

    python scripts/zoo_table.py            # print the markdown table
    python scripts/zoo_table.py --readme   # replace the table between the ZOO markers in README.md
"""

import re
import sys
from pathlib import Path

from cnnx import list_models


def zoo_markdown() -> str:
    rows = ["| name | family | variant | params | GMACs | input | loads checkpoints of |",
            "|---|---|---|---:|---:|---:|---|"]
    for s in list_models():
        aux = f" (+{s.aux_params / 1e6:.2f} M aux)" if s.has_aux else ""
        rows.append(f"| `{s.name}` | {s.family} | {s.variant} | {s.params:,}{aux} | {s.gmacs:.3f} "
                    f"| {s.input_size} | {s.checkpoint or '-'} |")
    return "\n".join(rows)


def publish(marker: str, content: str) -> None:
    """With --readme, replace what lies between `<!-- MARKER:BEGIN -->` and `<!-- MARKER:END -->` in README.md
    with `content`; else print it."""
    if "--readme" not in sys.argv:
        print(content)
        return
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = re.sub(rf"(<!-- {marker}:BEGIN -->\n).*?(<!-- {marker}:END -->)", lambda m: m[1] + content + "\n" + m[2],
                  readme.read_text(), flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    publish("ZOO", zoo_markdown())
