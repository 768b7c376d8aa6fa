"""Fine-tuned checkpoints: the number of classes read from the head (every family), class names from --labels in
the manifest and everywhere an artifact answers with labels, and the input size a network was trained at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnx
from cnnx.data import sample_images
from cnnx.errors import UsageError
from cnnx.manifest import parse_manifest, read_manifest
from cnnx.models.registry import get_spec, list_models
from cnnx.weights import create_model, head_keys, num_classes_of

DIGITS = [f"digit {i}" for i in range(10)]


def test_the_head_is_found_in_every_family():
    """fc, classifier.6, classif, logits, NiN's last conv, and the auxiliary heads: all read as 7 classes, also
    when the (training-only) auxiliary heads were not saved."""
    one_per_head_layout = ("alexnet", "vgg11", "nin", "googlenet", "googlenet-tv", "inception-v3", "resnet18",
                           "resnext50-32x4d", "inception-resnet-v1", "inception-resnet-v2")
    assert {get_spec(name).family for name in one_per_head_layout} == {s.family for s in list_models()}
    for spec in map(get_spec, one_per_head_layout):
        with torch.device("meta"):
            state = spec.builder(num_classes=7).state_dict()
        heads = head_keys(spec)
        assert heads and all(state[k].shape[0] == 7 for k in heads), spec.name
        assert num_classes_of(state, spec, "x.pth") == 7, spec.name
        main_only = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}
        assert num_classes_of(main_only, spec, "x.pth") == 7, spec.name
    assert head_keys(get_spec("nin")) == ["features.26.weight", "features.26.bias"]  # a conv, not a Linear


def test_heads_that_disagree_are_refused():
    spec = get_spec("googlenet-tv")
    with torch.device("meta"):
        state = spec.builder(num_classes=7).state_dict()
        state["aux1.fc2.weight"] = torch.empty(5, 1024)
    with pytest.raises(UsageError, match="different numbers of classes"):
        num_classes_of(state, spec, "x.pth")


def test_create_model_takes_the_checkpoints_classes(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "nin-7.pth"
    torch.save(get_spec("nin").builder(num_classes=7).state_dict(), path)
    model = create_model("nin", weights=path)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
    assert create_model("nin", weights=path, num_classes=7) is not None
    with pytest.raises(UsageError, match="7-class classifier, not 1000"):
        create_model("nin", weights=path, num_classes=1000)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A 10-class resnet18 checkpoint (a fine-tuned head) at 32x32 input, and a labels file."""
    folder = tmp_path_factory.mktemp("finetuned")
    torch.manual_seed(0)
    weights = folder / "resnet18-digits.pth"
    torch.save(get_spec("resnet18").builder(num_classes=10).state_dict(), weights)
    labels = folder / "labels.txt"
    labels.write_text("\n".join(DIGITS) + "\n")
    return weights, labels


@pytest.fixture(scope="module")
def exported(finetuned, tmp_path_factory):
    from click.testing import CliRunner

    from cnnx.cli import cli

    weights, labels = finetuned
    out = tmp_path_factory.mktemp("finetuned-export")
    result = CliRunner().invoke(cli, ["export", "resnet18", "--weights", str(weights), "--labels", str(labels),
                                      "--input-size", "32", "--out", str(out), "--target", "onnx"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "resnet18-fp32.onnx"


def test_export_records_classes_labels_and_input_size(exported):
    manifest = read_manifest(exported)
    assert manifest.output.shape == ("batch", 10) and manifest.num_classes == 10
    assert manifest.labels == DIGITS
    assert manifest.input.shape == ("batch", 3, 32, 32)
    assert (manifest.preprocess.crop, manifest.preprocess.resize) == (32, 37)  # round(32 / 0.875)
    assert manifest.parity["passed"]


def test_predict_classify_and_triton_answer_with_the_labels(run_cli, exported, tmp_path):
    photo = sample_images()[3]
    predictor = cnnx.load(exported)
    assert predictor.labels == DIGITS and predictor.image_shape == (3, 32, 32)
    predictions = predictor.classify(photo, topk=10)[0]
    assert sorted(p.label for p in predictions) == sorted(DIGITS)
    assert abs(sum(p.probability for p in predictions) - 1) < 1e-5

    result = run_cli("predict", exported, photo, "--topk", "3", "--json")
    assert result.exit_code == 0, result.output
    answered = json.loads(result.stdout)["results"][0]["predictions"]
    assert [p["label"] for p in answered] == [p.label for p in predictions[:3]]
    assert all(p["label"] == DIGITS[p["index"]] for p in answered)

    result = run_cli("triton", exported, "--repo", tmp_path / "repo")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "resnet18-fp32" / "labels.txt").read_text().splitlines() == DIGITS
    assert "dims: [ 10 ]" in (tmp_path / "repo" / "resnet18-fp32" / "config.pbtxt").read_text()


def test_check_rebuilds_the_fine_tuned_model_at_its_input_size(run_cli, exported):
    result = run_cli("check", exported, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"]


@pytest.mark.parametrize("text, message", [
    ("\n".join(DIGITS[:9]) + "\n", "names 9 classes, but this resnet18 outputs 10"),
    ("\n".join(DIGITS[:4] + [""] + DIGITS[5:]) + "\n", "line 5 is empty"),
    ("\n".join(DIGITS[:9] + ["digit 3"]) + "\n", "'digit 3' appears twice (lines 4 and 10)"),
    ("", "names no classes"),
])
def test_wrong_labels_files_are_usage_errors(run_cli, finetuned, tmp_path, text, message):
    weights, _ = finetuned
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    out = tmp_path / "out"
    result = run_cli("export", "resnet18", "--weights", weights, "--labels", labels, "--input-size", "32",
                     "--out", out, "--target", "onnx")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not list(out.glob("*.onnx")) if out.exists() else True


def test_num_classes_option_must_match_the_checkpoint(run_cli, finetuned, tmp_path):
    weights, _ = finetuned
    result = run_cli("export", "resnet18", "--weights", weights, "--num-classes", "5", "--input-size", "32",
                     "--out", tmp_path, "--target", "onnx")
    assert result.exit_code == 2
    assert "10-class classifier, not 5 classes" in result.stderr


def test_an_input_size_the_network_cannot_take_is_refused_before_writing(run_cli, tmp_path):
    result = run_cli("export", "alexnet-tv", "--input-size", "32", "--out", tmp_path, "--target", "onnx")
    assert result.exit_code == 2
    assert "alexnet-tv cannot run at 32x32 input" in result.stderr and "native size is 224" in result.stderr
    assert not list(tmp_path.glob("*.onnx"))
    result = run_cli("export", "resnet18", "--input-size", "64", "--resize", "60", "--out", tmp_path)
    assert result.exit_code == 2 and "smaller than the input size 64" in result.stderr


def test_seeded_model_with_num_classes(tmp_path):
    from cnnx import ExportOptions, export_model

    [result] = export_model(ExportOptions("resnet18", num_classes=3, labels=["cat", "dog", "bird"], input_size=48,
                                          resize=48, out_dir=tmp_path, target="onnx"))
    assert result.passed and result.manifest.output.shape == ("batch", 3)
    assert result.manifest.preprocess.resize == 48 and result.manifest.labels == ["cat", "dog", "bird"]
    logits = cnnx.load(result.path)(np.zeros((2, 3, 48, 48), np.float32))
    assert logits.shape == (2, 3)


def test_manifest_labels_must_fit_the_output(exported):
    data = json.loads(Path(exported).with_suffix(".json").read_text())
    data["labels"] = DIGITS[:9]
    with pytest.raises(UsageError, match="damaged 'labels'"):
        parse_manifest(data, "m.json")
    data.pop("labels")  # manifests written before labels existed still read
    assert parse_manifest(data, "m.json").labels is None
