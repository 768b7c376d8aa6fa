"""`cnnx predict`: real photos in every common mode, a corrupt file among them, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnx
from cnnx.data import sample_images
from cnnx.export.pipeline import ExportOptions, export_model


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict-artifacts")
    return export_model(ExportOptions("nin", precisions=("fp32",), out_dir=out, check=False))[0].path


@pytest.fixture
def photo_modes(tmp_path) -> dict[str, Path]:
    """One real photo saved in the modes users throw at a classifier."""
    rgb = Image.open(sample_images()[3]).convert("RGB")  # chelsea.jpg: a cat
    files = {}
    files["rgb"] = tmp_path / "rgb.jpg"
    rgb.save(files["rgb"], quality=95)
    files["grey"] = tmp_path / "grey.png"
    rgb.convert("L").save(files["grey"])
    files["rgba"] = tmp_path / "rgba.png"
    rgba = rgb.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(files["rgba"])
    files["cmyk"] = tmp_path / "cmyk.jpg"
    rgb.convert("CMYK").save(files["cmyk"])
    files["grey16"] = tmp_path / "grey16.png"
    grey16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(files["grey16"])  # saved as a 16-bit greyscale PNG
    files["palette"] = tmp_path / "palette.gif"
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(files["palette"])
    files["webp"] = tmp_path / "photo.webp"
    rgb.save(files["webp"])
    return files


def test_sixteen_bit_fixture_really_is_sixteen_bit(photo_modes):
    with Image.open(photo_modes["grey16"]) as img:
        assert img.mode.startswith("I")
        assert np.asarray(img).max() > 255


def test_predict_every_mode_json(run_cli, artifact, photo_modes):
    result = run_cli("predict", artifact, *photo_modes.values(), "--topk", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "nin" and report["backend"] == "onnxruntime"
    assert report["classified"] == len(photo_modes) and report["failed"] == 0
    labels = cnnx.load(artifact).labels
    for entry, path in zip(report["results"], photo_modes.values()):
        assert entry["image"] == str(path)
        predictions = entry["predictions"]
        assert len(predictions) == 3
        assert all(labels[p["index"]] == p["label"] for p in predictions)
        probabilities = [p["probability"] for p in predictions]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < probabilities[0] <= 1
    # grey and 16-bit grey are the same picture: the same answer
    by_name = dict(zip(photo_modes, report["results"]))
    assert by_name["grey"]["predictions"][0]["label"] == by_name["grey16"]["predictions"][0]["label"]
    # the CLI agrees with the Python API
    expected = cnnx.load(artifact).classify(photo_modes["rgb"], topk=3)[0]
    assert [p["label"] for p in by_name["rgb"]["predictions"]] == [p.label for p in expected]


def test_a_corrupt_image_is_named_and_the_rest_still_run(run_cli, artifact, photo_modes, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo_modes["rgb"].read_bytes()[:600])  # a truncated JPEG
    good = [photo_modes["grey"], photo_modes["cmyk"]]
    result = run_cli("predict", artifact, good[0], corrupt, good[1], "--topk", "2")
    assert result.exit_code == 2
    assert "corrupt.jpg" in result.stderr and "Traceback" not in result.output + result.stderr
    assert "2 image(s) classified, 1 failed" in result.stderr
    for path in good:
        assert path.name in result.stdout

    result = run_cli("predict", artifact, good[0], corrupt, tmp_path / "missing.png", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["classified"] == 1 and report["failed"] == 2
    errors = {Path(e["image"]).name: e["error"] for e in report["results"] if "error" in e}
    assert set(errors) == {"corrupt.jpg", "missing.png"}
    assert "corrupt.jpg" in errors["corrupt.jpg"]


def test_predict_a_folder_of_photos(run_cli, artifact, tmp_path):
    for photo in sample_images()[:3]:
        (tmp_path / photo.name).write_bytes(photo.read_bytes())
    result = run_cli("predict", artifact, tmp_path, "--json", "--topk", "1")
    assert result.exit_code == 0, result.output
    assert [Path(r["image"]).name for r in json.loads(result.stdout)["results"]] == \
        [p.name for p in sample_images()[:3]]


def test_predict_bad_artifact_is_a_usage_error(run_cli, tmp_path):
    result = run_cli("predict", tmp_path / "nothing.onnx", sample_images()[0])
    assert result.exit_code == 2 and "does not exist" in result.stderr
