"""Every zoo model against its reference numbers (shared/reference/zoo.md), in eval and training mode."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cnnx
from cnnx.models.registry import list_models
from cnnx.weights import initialize

SPECS = list_models()
BIG = {"vgg11", "vgg11-lrn", "vgg13", "vgg16-c", "vgg16", "vgg19", "resnet152", "resnext101-32x8d",
       "resnext101-64x4d", "inception-resnet-v2"}


def zoo_params():
    return [pytest.param(s, id=s.name, marks=[pytest.mark.slow] if s.name in BIG else []) for s in SPECS]


def test_zoo_has_every_architecture_of_the_source_post():
    names = {s.name for s in SPECS}
    assert {"alexnet", "alexnet-tv", "vgg11", "vgg11-lrn", "vgg13", "vgg16-c", "vgg16", "vgg19", "nin",
            "googlenet", "googlenet-tv", "inception-v3", "resnet18", "resnet34", "resnet50", "resnet101",
            "resnet152", "inception-resnet-v1", "inception-resnet-v2", "resnext50-32x4d",
            "resnext101-32x8d", "resnext101-64x4d"} <= names


@pytest.mark.parametrize("spec", zoo_params())
def test_model_matches_reference_and_runs(spec):
    model = spec.builder()
    aux = sum(p.numel() for head in getattr(model, "aux_heads", lambda: [])() for p in head.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert total - aux == spec.params, "inference-graph parameter count differs from the reference"
    assert aux == spec.aux_params

    initialize(model, spec, seed=0)
    x = torch.randn(2, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        one = model.eval()(x[:1])
    gmacs = counter.get_total_flops() / 2 / 1e9
    assert gmacs == pytest.approx(spec.gmacs, rel=0.01)

    with torch.no_grad():
        both = model(x)
    assert isinstance(both, torch.Tensor) and both.shape == (2, 1000)
    assert torch.isfinite(both).all()
    assert both.std() > 0.1, "outputs collapsed: default initialisation should give a varied workload"
    assert torch.allclose(both[:1], one, rtol=1e-4, atol=1e-4), "batch 2 disagrees with batch 1"

    model.train()
    with torch.no_grad():
        out = model(x)
    if spec.has_aux:
        assert isinstance(out, tuple) and hasattr(out, "_fields") and out[0].shape == (2, 1000)
        assert all(o.shape == (2, 1000) and torch.isfinite(o).all() for o in out)
    else:
        assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)


def test_seeded_initialisation_is_deterministic_and_seed_dependent():
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b, c = (cnnx.create_model("resnet18", seed=s)(x) for s in (0, 0, 1))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_names_accept_torchvision_spelling():
    assert cnnx.get_spec("ResNeXt50_32x4d").name == "resnext50-32x4d"
    assert math.isclose(cnnx.get_spec("inception_v3").gmacs, 5.713)


def test_inception_resnet_v2_head_drops_nothing_as_timm():
    """timm's InceptionResnetV2 defaults to drop_rate 0.0, so fine-tuning cnnx's model trains like timm's."""
    model = cnnx.get_spec("inception-resnet-v2").builder().train()
    features = torch.ones(8, 1536)
    assert torch.equal(model.dropout(features), features)
