"""Write the docs' table of published weights from the registry (cnnx/data/pretrained_weights.json).

    python scripts/pretrained_table.py            # print the markdown table
    python scripts/pretrained_table.py --write    # replace the PRETRAINED block of docs/guides/weights.md
"""

import re
import sys

from cnnx.weights.pretrained import shipped_weights

TORCHVISION_SOURCE = re.compile(r"torchvision/models/(\w+\.py) \(weights entry; url at line (\d+)\) @ (v[\d.]+)")


def short_source(source: str) -> str:
    found = TORCHVISION_SOURCE.search(source)
    if found:
        return f"torchvision {found[3]} `models/{found[1]}` line {found[2]}"
    if source.startswith("huggingface/pytorch-image-models"):
        return "timm @ aa4b5850 `inception_resnet_v2.py` 362-371, `results-imagenet.csv`; Hugging Face LFS"
    return source


def pretrained_markdown() -> str:
    rows = ["| model | `--pretrained` | weights | top-1 % | top-5 % | eval transform | file (published sha256) "
            "| license | source |",
            "|---|---|---|---:|---:|---|---|---|---|"]
    for w in shipped_weights():
        t = w.transform
        transform = f"{t['resize']}/{t['crop']} {t['interpolation']}"
        transform += ", mean = std = 0.5" if w.transform_input or t["std"] == [0.5, 0.5, 0.5] else ""
        if t["std"][0] < 0.01:
            transform += ", 0-255 scale"
        version = f"`{w.version}`" + (" (default)" if w.default else "")
        accuracy = ([f"{w.top1}", f"{w.top5}"] if w.classification else ["-", "-"])
        hash_text = (f"{w.sha256_prefix} (prefix)" if w.sha256 is None else f"{w.sha256[:16]}... (full)")
        name = w.name if w.classification else f"{w.name} (feature extractor: no classifier, refused)"
        rows.append(f"| `{w.model}` | {version} | {w.publisher} {name} | {accuracy[0]} | {accuracy[1]} "
                    f"| {transform} | `{w.file_name}` {hash_text} | {w.license} | {short_source(w.source)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from docs_blocks import publish  # scripts/ is on sys.path when this file runs

    publish("guides/weights.md", "PRETRAINED", pretrained_markdown(), write="--write" in sys.argv)
