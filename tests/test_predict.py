"""`cnnx predict`: real photos in every common mode, a corrupt file among them, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


def test_only_unreadable_inputs_are_each_reported_without_a_crash(run_cli, artifact, tmp_path):
    """A batch with no readable image (a mistyped folder, a chunk of corrupt files) is an error row per input
    and exit 2, not an internal error: nothing is left to run through the model."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    result = run_cli("predict", artifact, tmp_path / "no-such-folder", corrupt, "--json")
    assert result.exit_code == 2, result.output
    report = json.loads(result.stdout)
    assert report["classified"] == 0 and report["failed"] == 2
    assert [Path(e["image"]).name for e in report["results"]] == ["no-such-folder", "corrupt.jpg"]


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


# Extreme aspect ratios (issue 11): a 1 x 10000 PNG of ~125 bytes would be resized to 2,560,000 x 256 on its
# short side (2.8 GB, 12 s in `cnnx predict`), a 30000 x 1 one to 7,680,000 x 256 (MemoryError, exit 4, the
# whole batch lost). Only the center crop's region may be resized.
PEAK_RSS_LIMIT_MB = 1024  # ~180 MB measured for predict on a 2-core machine; 1 x 10000 resized whole: 2.8 GB


def run_bounded(code: str, *args) -> tuple[subprocess.CompletedProcess, float]:
    """Run Python `code` in a child with at most 3 GiB of address space (a regression then fails with
    MemoryError instead of eating the machine; one thread per pool keeps thread stacks and malloc arenas from
    reserving address space); returns the finished process and its peak RSS in MB: VmHWM, since ru_maxrss
    would also count the memory pytest had when it forked the child."""
    prelude = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
        try:
        """)
    epilogue = textwrap.dedent("""
        finally:
            peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
            print("peak-rss-kb", peak, file=sys.stderr)
        """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    script = prelude + textwrap.indent(code, "    ") + epilogue
    run = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         timeout=300, env=env, check=False)
    peak_kb = run.stderr.split("peak-rss-kb")[-1].split()[0] if "peak-rss-kb" in run.stderr else "nan"
    return run, float(peak_kb) / 1024


@pytest.fixture
def strips(tmp_path) -> dict[str, Path]:
    files = {"tall": tmp_path / "tall-1x10000.png", "wide": tmp_path / "wide-30000x1.png"}
    Image.new("RGB", (1, 10_000), (200, 120, 40)).save(files["tall"])
    Image.new("RGB", (30_000, 1), (40, 120, 200)).save(files["wide"])
    return files


def test_extreme_aspect_ratios_are_classified_in_bounded_memory(artifact, strips):
    assert strips["tall"].stat().st_size < 200  # the 124-byte image
    photo = sample_images()[3]
    run, peak_mb = run_bounded("from cnnx.cli import main\nmain()\n", "predict", artifact, strips["tall"],
                               strips["wide"], photo, "--json", "--threads", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    report = json.loads(run.stdout)
    assert report["classified"] == 3 and report["failed"] == 0
    assert [Path(r["image"]).name for r in report["results"]] == [strips["tall"].name, strips["wide"].name,
                                                                   photo.name]
    assert peak_mb < PEAK_RSS_LIMIT_MB


def test_every_image_reader_handles_extreme_aspect_ratios(artifact, strips, tmp_path):
    """Predictor.classify, `cnnx check --images` and calibration folders preprocess as predict does."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in [*strips.values(), *sample_images()[:4]]:
        (folder / path.name).write_bytes(path.read_bytes())
    code = textwrap.dedent("""
        import json
        from click.testing import CliRunner
        import cnnx
        from cnnx.cli import cli
        from cnnx.export.calibration import load_calibration
        from cnnx.data import image_files
        artifact, folder = sys.argv[1:]
        report = {"classified": len(cnnx.load(artifact).classify(image_files(folder), topk=1))}
        result = CliRunner().invoke(cli, ["check", artifact, "--images", folder, "--json"])
        assert result.exit_code == 0, result.output
        report["checked"] = json.loads(result.stdout)["results"][0]["inputs"]["photos"]
        report["calibration"] = list(load_calibration(folder, cnnx.get_spec("nin"), calib_size=4).tensors.shape)
        print(json.dumps(report))
        """)
    run, _ = run_bounded(code, artifact, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == {"classified": 6, "checked": 6, "calibration": [4, 3, 224, 224]}


def test_an_image_over_the_pixel_limit_fails_alone(run_cli, artifact, photo_modes, tmp_path, monkeypatch):
    """Over Pillow's decompression-bomb limit: a PNG is refused by name (the limit and why), a JPEG is
    decoded at reduced size (Image.draft); the other images still run."""
    big_png, big_jpeg, small = tmp_path / "big.png", tmp_path / "big.jpg", tmp_path / "small.png"
    photo = Image.open(photo_modes["rgb"])
    photo.resize((240, 180)).save(big_png)
    photo.resize((240, 180)).save(big_jpeg)
    photo.resize((160, 120)).save(small)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 150)  # 240 x 180 is over it, not twice over
    result = run_cli("predict", artifact, big_png, big_jpeg, small, "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["classified"] == 2 and report["failed"] == 1
    error = report["results"][0]["error"]
    assert "big.png" in error and "240 x 180" in error and "decompression-bomb limit" in error
    assert "predictions" in report["results"][1] and "predictions" in report["results"][2]
