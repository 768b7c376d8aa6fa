#!/usr/bin/env python
"""Record torchvision/timm reference layouts and logits for tests/test_reference_checkpoints.py.

Runs in a separate reference environment, NOT in cnnx's own (torchvision needs a matching torch, which
CI does not have). For each reference architecture it builds the torchvision/timm model (no pretrained
download), loads the deterministic synthetic weights of tests/reference_weights.py (seed 0), runs the
deterministic input (seed 0) in eval mode, and writes the state-dict layout and the 1000 logits to
tests/data/reference_layouts.json. CI then checks that cnnx's models have the same layout and compute the
same logits for the same weights, without torchvision or timm installed.

Regenerate (from the repository root):

    python3.11 -m venv /work/refvenv
    /work/refvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/refvenv/bin/pip install timm        # 1.0.31 was used
    /work/refvenv/bin/python scripts/make_reference_fixtures.py

Options: --only NAME[,NAME...] to (re)record some entries (the others are kept from the existing file),
--out PATH, --check to recompute and compare against the existing file without writing.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "reference_layouts.json"
FORMAT_VERSION = 1
WEIGHTS_SEED = 0
INPUT_SEED = 0
GZIP_ABOVE = 2_000_000  # bytes


def _load_reference_weights():
    path = ROOT / "tests" / "reference_weights.py"
    spec = importlib.util.spec_from_file_location("reference_weights", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


rw = _load_reference_weights()


def _tv(fn_name: str, **kwargs):
    def build():
        import torchvision.models as tvm

        return getattr(tvm, fn_name)(weights=None, **kwargs)

    return build


def _timm(model_name: str, **kwargs):
    def build():
        import timm

        return timm.create_model(model_name, pretrained=False, **kwargs)

    return build


_INCEPTION_KW = dict(aux_logits=True, transform_input=False, init_weights=False)
BUILDER_KWARGS = {"googlenet": _INCEPTION_KW, "inception_v3": _INCEPTION_KW}  # the rest take none


def _architectures() -> list[tuple[str, str, str, dict, int]]:
    """(cnnx name, library, builder name, constructor kwargs, native input size) of every zoo model whose spec
    names the public checkpoint it loads (ModelSpec.checkpoint, e.g. "torchvision resnext50_32x4d")."""
    sys.path.insert(0, str(ROOT / "src"))  # reading the specs needs only torch, which this environment has
    from cnnx.models.registry import list_models

    rows = []
    for spec in list_models():
        if spec.checkpoint:
            library, builder = spec.checkpoint.split()
            rows.append((spec.name, library, builder, BUILDER_KWARGS.get(builder, {}), spec.input_size))
    return rows


ARCHITECTURES = _architectures()


def _library_version(library: str) -> str:
    if library == "torchvision":
        import torchvision

        return torchvision.__version__.split("+")[0]
    import timm

    return timm.__version__


def _sig7(x: float) -> float:
    return float(f"{x:.7g}")


def _call_repr(library: str, fn: str, kwargs: dict) -> str:
    if library == "torchvision":
        args = ", ".join(["weights=None"] + [f"{k}={v!r}" for k, v in kwargs.items()])
        return f"torchvision.models.{fn}({args})"
    args = ", ".join([repr(fn), "pretrained=False"] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return f"timm.create_model({args})"


def record(name: str, library: str, fn: str, kwargs: dict, size: int) -> dict:
    builder = _tv(fn, **kwargs) if library == "torchvision" else _timm(fn, **kwargs)
    torch.manual_seed(0)  # only the builder's own (overwritten) init uses the global RNG
    model = builder()
    reference_sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in reference_sd.items()}
    weights = rw.synthetic_state_dict(shapes, seed=WEIGHTS_SEED)
    for key, tensor in reference_sd.items():  # the generator must reproduce the layout's dtypes too
        assert weights[key].dtype == tensor.dtype, (name, key, weights[key].dtype, tensor.dtype)
    model.load_state_dict(weights, strict=True)
    model.eval()
    x = rw.reference_input((1, 3, size, size), seed=INPUT_SEED)
    with torch.inference_mode():
        logits = model(x)
    assert isinstance(logits, torch.Tensor), f"{name}: eval forward returned {type(logits)}"
    assert logits.shape == (1, 1000), (name, logits.shape)
    logits = logits[0].float()
    assert torch.isfinite(logits).all(), name
    # How much of the output is the input's doing (vs. biases alone): a weak-signal guard for the test.
    with torch.inference_mode():
        zero_logits = model(torch.zeros_like(x))[0].float()
        other_logits = model(rw.reference_input(tuple(x.shape), seed=INPUT_SEED + 1))[0].float()
    top5 = torch.topk(logits, 5).indices.tolist()
    return {
        "name": name,
        "source": f"{library} {_library_version(library)} {fn}",
        "constructor": _call_repr(library, fn, kwargs),
        "input_size": size,
        "input_shape": [1, 3, size, size],
        "weights_seed": WEIGHTS_SEED,
        "input_seed": INPUT_SEED,
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_tensors": len(reference_sd),
        "weights_fingerprint": rw.fingerprint(weights),
        "logits_stats": {
            "max_abs": float(logits.abs().max()),
            "std": float(logits.std()),
            "std_minus_zero_input": float((logits - zero_logits).std()),
            "max_abs_diff_other_input": float((logits - other_logits).abs().max()),
        },
        "top5": top5,
        "state_dict": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in reference_sd.items()],
        "logits": [_sig7(v) for v in logits.tolist()],
    }


def _dump(data: dict) -> str:
    """JSON with one state-dict entry per line and the logits packed, so diffs stay readable."""
    lines = ["{"]
    top = [(k, v) for k, v in data.items() if k != "models"]
    for k, v in top:
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "models": [')
    for i, m in enumerate(data["models"]):
        lines.append("    {")
        items = list(m.items())
        for j, (k, v) in enumerate(items):
            comma = "," if j < len(items) - 1 else ""
            if k == "state_dict":
                lines.append('      "state_dict": [')
                for n, entry in enumerate(v):
                    c = "," if n < len(v) - 1 else ""
                    lines.append(f"        {json.dumps(entry)}{c}")
                lines.append(f"      ]{comma}")
            elif k == "logits":
                lines.append('      "logits": [')
                for n in range(0, len(v), 10):
                    chunk = ", ".join(repr(x) for x in v[n:n + 10])
                    c = "," if n + 10 < len(v) else ""
                    lines.append(f"        {chunk}{c}")
                lines.append(f"      ]{comma}")
            else:
                lines.append(f"      {json.dumps(k)}: {json.dumps(v)}{comma}")
        lines.append("    }" + ("," if i < len(data["models"]) - 1 else ""))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # must round-trip
    return text


def _read(path: Path) -> dict | None:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            raw = p.read_bytes()
            if p.suffix == ".gz":
                raw = gzip.decompress(raw)
            return json.loads(raw)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", default="", help="comma-separated cnnx names to re-record")
    ap.add_argument("--check", action="store_true", help="recompute and compare, write nothing")
    args = ap.parse_args(argv)

    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {a[0] for a in ARCHITECTURES}
    if unknown:
        ap.error(f"unknown names: {sorted(unknown)}")
    previous = _read(args.out) if (only or args.check) else None
    prev_models = {m["name"]: m for m in (previous or {}).get("models", [])}

    torch.set_num_threads(max(1, torch.get_num_threads()))
    import timm
    import torchvision

    # A probe of the generator, so the test can tell "different random numbers" from "different model".
    probe_shapes = {"conv.weight": (4, 3, 3, 3), "bn.weight": (4,), "bn.bias": (4,), "bn.running_mean": (4,),
                    "bn.running_var": (4,), "bn.num_batches_tracked": (), "fc.weight": (5, 4), "fc.bias": (5,)}
    probe = rw.synthetic_state_dict(probe_shapes, seed=0)
    data = {
        "format": FORMAT_VERSION,
        "generated_by": "scripts/make_reference_fixtures.py",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "timm": timm.__version__,
        },
        "weights": "tests/reference_weights.py synthetic_state_dict(shapes, seed=0); "
                   "input reference_input((1, 3, S, S), seed=0); eval mode; logits rounded to 7 significant digits",
        "generator_probe": {
            "shapes": {k: list(v) for k, v in probe_shapes.items()},
            "values": {k: [_sig7(x) for x in v.flatten().tolist()] for k, v in probe.items()},
            "input_first8": [_sig7(x) for x in rw.reference_input((1, 3, 8, 8), seed=0).flatten()[:8].tolist()],
        },
        "models": [],
    }

    failures = 0
    for name, library, fn, kwargs, size in ARCHITECTURES:
        if only and name not in only and name in prev_models:
            data["models"].append(prev_models[name])
            continue
        t0 = time.time()
        entry = record(name, library, fn, kwargs, size)
        msg = (f"{name:22s} {entry['source']:42s} {entry['num_tensors']:5d} tensors "
               f"{entry['num_params']:>11,d} params  max|logit| {entry['logits_stats']['max_abs']:.4g} "
               f"std {entry['logits_stats']['std']:.4g} (input part {entry['logits_stats']['std_minus_zero_input']:.4g}, "
               f"other input {entry['logits_stats']['max_abs_diff_other_input']:.3g})"
               f"  top5 {entry['top5']}  {time.time() - t0:.1f}s")
        if args.check and name in prev_models:
            old = prev_models[name]
            ref = torch.tensor(old["logits"])
            new = torch.tensor(entry["logits"])
            diff = float((ref - new).abs().max())
            same_layout = old["state_dict"] == entry["state_dict"]
            ok = same_layout and diff <= 1e-4 * max(1.0, float(ref.abs().max()))
            failures += not ok
            msg += f"  check: layout {'same' if same_layout else 'DIFFERENT'}, max diff {diff:.3g}"
        print(msg, flush=True)
        data["models"].append(entry)

    if args.check:
        print("check:", "OK" if failures == 0 else f"{failures} mismatches")
        return 1 if failures else 0

    text = _dump(data)
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = text.encode("utf-8")
    gz = out.with_name(out.name + ".gz")
    if len(raw) > GZIP_ABOVE:
        gz.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
        if out.exists():
            out.unlink()
        print(f"wrote {gz} ({gz.stat().st_size:,} bytes gzipped, {len(raw):,} raw)")
    else:
        out.write_bytes(raw)
        if gz.exists():
            gz.unlink()
        print(f"wrote {out} ({len(raw):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
