"""Checkpoints: round trips, refusals with actionable messages."""

import collections
import pickle

import pytest
import torch
from safetensors.torch import save_file

import cnnx
from cnnx.errors import UsageError

X = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))


def logits(model):
    with torch.no_grad():
        return model(X)


@pytest.fixture(scope="module")
def resnet18():
    return cnnx.create_model("resnet18", seed=7)


def test_state_dict_round_trip_reproduces_outputs(resnet18, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet18.state_dict(), path)
    loaded = cnnx.create_model("resnet18", weights=path)
    assert torch.equal(logits(loaded), logits(resnet18))
    assert not loaded.training


def test_safetensors_and_wrapped_checkpoints_load(resnet18, tmp_path):
    save_file({k: v.contiguous() for k, v in resnet18.state_dict().items()}, tmp_path / "r18.safetensors")
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet18.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ddp.pth")
    for name in ("r18.safetensors", "ddp.pth"):
        assert torch.equal(logits(cnnx.create_model("resnet18", weights=tmp_path / name)), logits(resnet18))


def test_checkpoint_of_another_architecture_lists_the_differences(resnet18, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(resnet18.state_dict(), path)
    with pytest.raises(UsageError) as err:
        cnnx.create_model("resnet50", weights=path)
    text = str(err.value)
    assert "does not fit model 'resnet50'" in text
    assert "missing keys" in text and "layer1.0.conv3.weight" in text
    assert "mis-shaped keys" in text and "checkpoint (64, 64, 3, 3) vs model" in text
    assert "torchvision resnet50" in err.value.hint


def test_checkpoint_that_carries_code_is_refused(tmp_path):
    path = tmp_path / "pickled-module.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: loading it would run pickled code
    with pytest.raises(UsageError, match="refused to load") as err:
        cnnx.create_model("resnet18", weights=path)
    assert "state_dict()" in err.value.hint


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"fc.weight": Payload()}))
    with pytest.raises(UsageError, match="not a readable PyTorch checkpoint"):
        cnnx.create_model("resnet18", weights=path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all"])
def test_unreadable_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="not a readable PyTorch checkpoint"):
        cnnx.create_model("resnet18", weights=path)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        cnnx.create_model("resnet18", weights=tmp_path / "nope.pth")


def test_checkpoint_without_aux_heads_loads_into_aux_model(tmp_path):
    model = cnnx.create_model("googlenet-tv")
    trunk = collections.OrderedDict((k, v) for k, v in model.state_dict().items() if not k.startswith("aux"))
    torch.save(trunk, tmp_path / "no-aux.pth")
    loaded = cnnx.create_model("googlenet-tv", weights=tmp_path / "no-aux.pth")
    assert torch.equal(logits(loaded), logits(model))
