"""cnnx's torchvision/timm-layout models load real torchvision/timm state dicts and compute what
torchvision/timm compute for the same weights, checked without torchvision or timm installed.

tests/data/reference_layouts.json was recorded by scripts/make_reference_fixtures.py in a separate
environment with torchvision/timm (see that script for the versions and how to regenerate). For every
reference architecture it holds the state-dict layout (ordered keys, shapes, dtypes) and the eval-mode
logits of the reference model loaded with tests/reference_weights.synthetic_state_dict(seed=0) on
reference_input(seed=0). Here the same weights are generated again, saved as an ordinary checkpoint file
and loaded through cnnx's public path, `cnnx.create_model(name, weights=path)`.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cnnx import get_spec, list_models

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "data" / "reference_layouts.json"
SLOW = {"vgg16", "vgg19", "resnet152", "resnext101-32x8d", "resnext101-64x4d"}
RTOL_OF_MAX = 1e-5  # max |cnnx - ref| <= RTOL_OF_MAX * max(1, max |ref|)


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


rw = _load_module("_cnnx_reference_weights", HERE / "reference_weights.py")


def _load_fixture() -> dict:
    if FIXTURE.exists():
        return json.loads(FIXTURE.read_text(encoding="utf-8"))
    gz = FIXTURE.with_name(FIXTURE.name + ".gz")
    return json.loads(gzip.decompress(gz.read_bytes()).decode("utf-8"))


DATA = _load_fixture()
ENTRIES = {m["name"]: m for m in DATA["models"]}
PARAMS = [pytest.param(name, id=name, marks=[pytest.mark.slow] if name in SLOW else []) for name in ENTRIES]


def _create_model():
    from cnnx import create_model

    return create_model


def _shapes(entry: dict) -> dict[str, tuple[int, ...]]:
    return {key: tuple(shape) for key, shape, _dtype in entry["state_dict"]}


def _layout_report(ref: list[list], got: dict[str, torch.Tensor], limit: int = 12) -> list[str]:
    """Human-readable differences between the reference layout and a state dict; [] when identical."""
    ref_keys = [k for k, _, _ in ref]
    ref_map = {k: (tuple(s), d) for k, s, d in ref}
    got_keys = list(got)
    problems: list[str] = []

    def listing(title: str, items: list[str]):
        if items:
            shown = ", ".join(items[:limit]) + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
            problems.append(f"{title} ({len(items)}): {shown}")

    missing = [k for k in ref_keys if k not in got]
    unexpected = [k for k in got_keys if k not in ref_map]
    listing("missing keys (in the reference, not in cnnx)", missing)
    listing("unexpected keys (in cnnx, not in the reference)", unexpected)
    mis_shaped = [f"{k}: cnnx {tuple(got[k].shape)} vs ref {ref_map[k][0]}"
                  for k in ref_keys if k in got and tuple(got[k].shape) != ref_map[k][0]]
    listing("mis-shaped keys", mis_shaped)
    mis_typed = [f"{k}: cnnx {str(got[k].dtype).replace('torch.', '')} vs ref {ref_map[k][1]}"
                 for k in ref_keys if k in got and str(got[k].dtype).replace("torch.", "") != ref_map[k][1]]
    listing("dtype differences", mis_typed)
    if not missing and not unexpected and got_keys != ref_keys:
        i = next(i for i, (a, b) in enumerate(zip(got_keys, ref_keys)) if a != b)
        problems.append(f"same keys, different order: first difference at position {i}: "
                        f"cnnx {got_keys[i]!r} vs ref {ref_keys[i]!r}")
    if problems:
        first = next((i for i, (a, b) in enumerate(zip(got_keys, ref_keys)) if a != b),
                     min(len(got_keys), len(ref_keys)))
        ctx = lambda keys: keys[max(0, first - 1):first + 3]  # noqa: E731
        problems.append(f"{len(got_keys)} cnnx keys vs {len(ref_keys)} reference keys; sequences first differ at "
                        f"index {first}: cnnx {ctx(got_keys)} vs ref {ctx(ref_keys)}")
    return problems


def test_fixture_is_complete():
    # every zoo model that loads a torchvision/timm checkpoint (ModelSpec.checkpoint) has its reference recorded
    assert set(ENTRIES) == {s.name for s in list_models() if s.checkpoint}
    for entry in ENTRIES.values():
        assert len(entry["logits"]) == 1000, entry["name"]


def test_generator_reproduces_reference_numbers():
    """The weights/input generator gives, under this torch, the numbers the fixtures were made with.

    If this fails, every logits test below fails for a reason that has nothing to do with cnnx's models."""
    probe = DATA["generator_probe"]
    got = rw.synthetic_state_dict({k: tuple(v) for k, v in probe["shapes"].items()}, seed=0)
    assert list(got) == list(probe["values"])
    for key, values in probe["values"].items():
        actual = got[key].flatten().double()
        torch.testing.assert_close(actual, torch.tensor(values, dtype=torch.float64), rtol=1e-6, atol=1e-12,
                                   msg=lambda m, key=key: f"{key}: {m}")
    assert got["bn.num_batches_tracked"].dtype == torch.int64 and got["bn.num_batches_tracked"].shape == ()
    first8 = rw.reference_input((1, 3, 8, 8), seed=0).flatten()[:8].double()
    torch.testing.assert_close(first8, torch.tensor(probe["input_first8"], dtype=torch.float64), rtol=1e-6,
                               atol=1e-12)


@pytest.mark.parametrize("name", PARAMS)
def test_state_dict_layout_matches_reference(name):
    """Same keys, same order, same shapes and dtypes: the public checkpoint loads with strict=True."""
    entry = ENTRIES[name]
    model = get_spec(name).builder()  # the bare architecture: no need to initialise weights for a layout test
    problems = _layout_report(entry["state_dict"], model.state_dict())
    assert not problems, f"{name} vs {entry['source']}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", PARAMS)
def test_checkpoint_logits_match_reference(name, tmp_path):
    """A checkpoint in the reference layout, loaded through create_model(weights=...), gives the
    reference model's logits."""
    entry = ENTRIES[name]
    weights = rw.synthetic_state_dict(_shapes(entry), seed=entry["weights_seed"])
    fp = rw.fingerprint(weights)
    ref_fp = entry["weights_fingerprint"]
    assert fp == pytest.approx(ref_fp, rel=1e-9, abs=1e-9 * ref_fp[1]), (
        "the synthetic weights differ from the ones the fixture was recorded with (generator problem, not "
        f"a model problem): {fp} vs {entry['weights_fingerprint']}")
    path = tmp_path / f"{name}.pth"
    torch.save(weights, path)
    del weights
    try:
        model = _create_model()(name, weights=path)
    finally:
        path.unlink(missing_ok=True)
    training = [n for n, m in model.named_modules() if m.training]
    assert not training, f"create_model(weights=...) must return an eval-mode model; training: {training[:5]}"

    x = rw.reference_input(entry["input_shape"], seed=entry["input_seed"])
    with torch.inference_mode():
        out = model(x)
    assert isinstance(out, torch.Tensor), f"eval forward returned {type(out).__name__}, expected a Tensor"
    assert tuple(out.shape) == (1, 1000), f"logits shape {tuple(out.shape)}"
    got = out[0].double()
    ref = torch.tensor(entry["logits"], dtype=torch.float64)

    diff = (got - ref).abs()
    tol = RTOL_OF_MAX * max(1.0, float(ref.abs().max()))
    worst = int(diff.argmax())
    top5 = torch.topk(got, 5).indices.tolist()
    summary = (f"{name} vs {entry['source']}: max |diff| {float(diff.max()):.4g} at class {worst} "
               f"(cnnx {float(got[worst]):.7g}, ref {float(ref[worst]):.7g}), tolerance {tol:.3g}; "
               f"top-5 cnnx {top5} vs ref {entry['top5']}")
    assert torch.isfinite(got).all(), summary
    assert float(diff.max()) <= tol, summary
    assert top5[0] == entry["top5"][0], summary
    assert top5 == entry["top5"], summary
