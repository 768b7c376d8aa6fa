"""Write the zoo table of the docs from the registry (so it is never typed by hand).

    python scripts/zoo_table.py            # print the markdown table
    python scripts/zoo_table.py --write    # replace the table between the ZOO markers in docs/guides/zoo.md
"""

import sys

from cnnx import list_models
from docs_blocks import publish


def zoo_markdown() -> str:
    rows = ["| name | family | variant | params | GMACs | input | loads checkpoints of |",
            "|---|---|---|---:|---:|---:|---|"]
    for s in list_models():
        aux = f" (+{s.aux_params / 1e6:.2f} M aux)" if s.has_aux else ""
        rows.append(f"| `{s.name}` | {s.family} | {s.variant} | {s.params:,}{aux} | {s.gmacs:.3f} "
                    f"| {s.input_size} | {s.checkpoint or '-'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    publish("guides/zoo.md", "ZOO", zoo_markdown(), write="--write" in sys.argv)
