"""`cnnx eval`: every label layout, verdicts and changed images, unreadable images, bad data, bounded memory.

The labels here are made from the fp32 artifact's own top-1 on the shipped photos (the seeded network has no
meaningful classes): then the fp32 artifact must score exactly 100 %, which proves that synset ids, class
indices and class names map to the right class index. Accuracy on a trained network: tests/test_trained.py."""

from __future__ import annotations

import csv
import json
import shutil
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

import cnnx
from cnnx.backends.openvino import OpenVinoRunner
from cnnx.data import imagenet_labels, imagenet_synsets, sample_images
from cnnx.errors import UsageError
from cnnx.eval import (
    LabeledData,
    artifact_candidate,
    evaluate,
    labeled_images,
    manifest_candidate,
    read_ground_truth,
    resolve_labels,
    spread_subset,
)
from cnnx.export.pipeline import ExportOptions, export_model
from plans import plan_manifest, write_fake_plan

SIZE = 64  # a small input keeps the artifacts fast; the manifest records it, so eval applies it


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Seeded resnet18 (1000 classes) at 64x64: fp32, and an fp16 artifact of other weights (seed 1)."""
    out = tmp_path_factory.mktemp("eval-artifacts")
    [fp32] = export_model(ExportOptions("resnet18", input_size=SIZE, out_dir=out, target="onnx", check=False))
    other = out / "other-weights"
    [fp16] = export_model(ExportOptions("resnet18", precisions=("fp16",), seed=1, input_size=SIZE, out_dir=other,
                                        target="onnx", check=False))
    return {"fp32": fp32.path, "fp16-other": fp16.path}


@pytest.fixture(scope="module")
def predicted(artifacts) -> dict[Path, int]:
    """Each shipped photo and the class the fp32 artifact gives it."""
    predictor = cnnx.load(artifacts["fp32"])
    labels = predictor.labels
    return {photo: labels.index(predictions[0].label)
            for photo, predictions in zip(sample_images(), predictor.classify(sample_images(), topk=1))}


def class_folders(root: Path, predicted: dict[Path, int], name_of) -> Path:
    for photo, index in predicted.items():
        (root / name_of(index)).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / name_of(index) / photo.name)
    return root


def run_json(run_cli, *args):
    result = run_cli("eval", *args, "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


@pytest.mark.parametrize("naming", ["synset", "index", "name"])
def test_class_folders_map_to_the_right_classes(run_cli, artifacts, predicted, tmp_path, naming):
    name_of = {"synset": lambda i: imagenet_synsets()[i], "index": str,
               "name": lambda i: imagenet_labels()[i]}[naming]
    data = class_folders(tmp_path / "data", predicted, name_of)
    result, report = run_json(run_cli, artifacts["fp32"], "--data", data)
    assert result.exit_code == 0, result.output
    [row] = report["rows"]
    assert report["images"] == len(predicted) and report["layout"] == "class folders"
    assert row["top1"] == 1.0 and row["top5"] == 1.0 and row["passed"] is None  # no reference: no verdict


def test_synset_list_is_the_sorted_imagenet_1k_ids():
    synsets = imagenet_synsets()
    assert len(synsets) == 1000 == len(set(synsets)) and synsets == sorted(synsets)
    assert synsets[0] == "n01440764" and synsets[281] == "n02123045" and synsets[-1] == "n15075141"
    assert imagenet_labels()[281] == "tabby"  # n02123045 is "tabby, tabby cat" in the ILSVRC devkit


def test_flat_folder_with_csv_or_caffe_style_labels(run_cli, artifacts, predicted, tmp_path):
    flat = tmp_path / "val"
    flat.mkdir()
    for photo in predicted:
        shutil.copy(photo, flat / photo.name)
    # LOC_val_solution.csv's layout: a header, file names without extension, synset + box coordinates
    loc = tmp_path / "LOC_val_solution.csv"
    with open(loc, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        writer.writerow(["not_in_this_folder", "n01440764 1 2 3 4"])
        for photo, index in predicted.items():
            synset = imagenet_synsets()[index]
            writer.writerow([photo.stem, f"{synset} 10 20 110 120 {synset} 5 5 9 9"])
    caffe = tmp_path / "val.txt"  # Caffe's ImageNet val.txt: "file index" lines
    caffe.write_text("".join(f"{photo.name} {index}\n" for photo, index in predicted.items()))
    for labels in (loc, caffe):
        result, report = run_json(run_cli, artifacts["fp32"], "--data", flat, "--labels", labels)
        assert result.exit_code == 0, result.output
        assert report["layout"] == "labels file" and report["rows"][0]["top1"] == 1.0
    assert report["unmatched_entries"] == 0
    assert run_json(run_cli, artifacts["fp32"], "--data", flat, "--labels", loc)[1]["unmatched_entries"] == 2


def test_eager_reference_verdicts_and_changed_images(run_cli, artifacts, predicted, tmp_path):
    data = class_folders(tmp_path / "data", predicted, lambda i: imagenet_synsets()[i])
    # the eager model is rebuilt at the artifacts' input size: it agrees with the fp32 artifact exactly
    result, report = run_json(run_cli, artifacts["fp32"], artifacts["fp16-other"], "--data", data,
                              "--model", "resnet18")
    assert result.exit_code == 1, result.output  # other weights keep far less than 99 % of the top-1
    eager, fp32, other = report["rows"]
    assert eager["name"] == "eager PyTorch" and eager["top1"] == 1.0 and eager["reference"] is None
    assert fp32["reference"] == "eager PyTorch" and fp32["passed"] and fp32["retained"] == 1.0
    assert fp32["changed"] == 0 and fp32["sqnr_db"] > 60
    assert other["passed"] is False and other["retained"] < 0.99 and other["delta_top1"] < 0
    assert other["changed"] == len(other["changed_images"]) == other["became_wrong"] > 0
    change = other["changed_images"][0]
    assert change["label"] == change["reference"] != change["top1"]
    assert (data / change["image"]).is_file()
    assert "keep less than 0.99 of the fp32 top-1" in result.stderr and str(artifacts["fp16-other"]) in result.stderr
    # the same without --json: a table with the verdicts, and the changed images by name
    result = run_cli("eval", artifacts["fp32"], artifacts["fp16-other"], "--data", data, "--model", "resnet18",
                     "--show-changed", "1")
    assert result.exit_code == 1
    assert "reference" in result.stdout and "PASS" in result.stdout and "FAIL" in result.stdout
    assert change["image"] in result.stdout and "more changed images" in result.stdout
    # the artifact that keeps the eager top-1 passes on its own
    assert run_cli("eval", artifacts["fp32"], "--data", data, "--model", "resnet18").exit_code == 0


def test_unreadable_images_are_named_counted_and_not_fatal(run_cli, artifacts, predicted, tmp_path):
    data = class_folders(tmp_path / "data", predicted, str)
    first = next(iter(predicted))
    broken = data / str(predicted[first]) / "truncated.jpg"
    broken.write_bytes(first.read_bytes()[:500])
    result, report = run_json(run_cli, artifacts["fp32"], "--data", data)
    assert result.exit_code == 0, result.output
    assert report["images"] == len(predicted) and report["listed"] == len(predicted) + 1
    assert [u["image"] for u in report["unreadable"]] == [str(broken)]
    assert "truncated.jpg" in result.stderr and report["rows"][0]["top1"] == 1.0


@pytest.mark.parametrize("layout, message", [
    ("unknown", "1 labels are not classes of the model: 'no-such-class'"),
    ("too-large-index", "class index 1000, but the model has 1000 classes"),
    ("empty", "no labeled images"),
    ("loose", "holds images but no class subfolders"),
    ("unlabeled", "1 images in"),
])
def test_bad_data_is_a_usage_error_with_examples(run_cli, artifacts, tmp_path, layout, message):
    photos = sample_images()[:2]
    data = tmp_path / "data"
    data.mkdir()
    args = []
    if layout in ("unknown", "too-large-index"):
        folder = data / ("no-such-class" if layout == "unknown" else "1000")
        folder.mkdir()
        shutil.copy(photos[0], folder)
    elif layout in ("loose", "unlabeled"):
        for photo in photos:
            shutil.copy(photo, data)
        if layout == "unlabeled":
            (tmp_path / "gt.txt").write_text(f"{photos[0].name} 3\n")
            args = ["--labels", tmp_path / "gt.txt"]
    result = run_cli("eval", artifacts["fp32"], "--data", data, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_labels_that_do_not_fit_the_number_of_classes():
    data = LabeledData(root=Path("d"), layout="class folders", images=[Path("d/n01440764/a.png"), Path("d/12/b.png")],
                       labels=["n01440764", "12"])
    with pytest.raises(UsageError, match="2 labels do not fit the model's 10 classes") as error:
        resolve_labels(data, 10, [str(i) for i in range(10)])
    assert "ImageNet synset id" in str(error.value) and "class index 12" in str(error.value)
    assert list(resolve_labels(data, 1000, None)) == [0, 12]


def test_ground_truth_files_are_parsed_strictly(tmp_path):
    bad = tmp_path / "gt.txt"
    bad.write_text("a.jpg 1\nb.jpg\n")
    with pytest.raises(UsageError, match="line 2"):
        read_ground_truth(bad)
    names = tmp_path / "names.txt"
    names.write_text("# a comment\na.jpg tabby, tabby cat\n\nb.jpg 3\n")
    assert read_ground_truth(names) == [("a.jpg", "tabby, tabby cat", 2), ("b.jpg", "3", 4)]


def test_limit_spreads_over_the_sorted_images(run_cli, artifacts, predicted, tmp_path):
    assert spread_subset(10, 4) == [0, 2, 5, 7] and spread_subset(3, 10) == [0, 1, 2]
    data = class_folders(tmp_path / "data", predicted, str)
    result, report = run_json(run_cli, artifacts["fp32"], "--data", data, "--limit", "3", "--batch", "2")
    assert result.exit_code == 0 and report["images"] == 3 and report["listed"] == len(predicted)


def test_memory_stays_flat_in_the_number_of_images(artifacts, tmp_path):
    """Images are decoded a bounded number of batches ahead: 8x the images must not need 8x the memory."""
    candidate = artifact_candidate(artifacts["fp32"])

    def peak(copies: int) -> int:
        root = tmp_path / f"x{copies}"
        for i in range(copies):
            for photo in sample_images():
                folder = root / "0"
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(photo, folder / f"{i}-{photo.name}")
        data = labeled_images(root)
        tracemalloc.start()
        try:
            calls = []
            report = evaluate([candidate], data, batch=2, workers=2, progress=lambda *a: calls.append(a))
            return tracemalloc.get_traced_memory()[1], report, calls
        finally:
            tracemalloc.stop()

    small, _, _ = peak(1)
    large, report, calls = peak(8)
    assert report.images == 80 and calls[-1][:2] == (80, 80) and str(artifacts["fp32"]) in calls[-1][2]
    assert large < 2 * small, (small, large)


@pytest.mark.openvino
@pytest.mark.skipif(OpenVinoRunner.unavailable_reason() is not None, reason=str(OpenVinoRunner.unavailable_reason()))
def test_openvino_backend(run_cli, artifacts, predicted, tmp_path):
    data = class_folders(tmp_path / "data", predicted, str)
    result, report = run_json(run_cli, artifacts["fp32"], "--data", data, "--backend", "openvino")
    assert result.exit_code == 0, result.output
    assert report["rows"][0]["backend"] == "openvino" and report["rows"][0]["top1"] == 1.0


def test_nothing_to_evaluate_and_eager_options_without_model(run_cli, artifacts, tmp_path):
    assert run_cli("eval", "--data", tmp_path).exit_code == 2
    result = run_cli("eval", artifacts["fp32"], "--data", tmp_path, "--weights", "x.pth")
    assert result.exit_code == 2 and "--model NAME" in result.stderr


def test_a_plan_is_judged_by_its_manifest_without_tensorrt(tmp_path):
    """The Ray eval driver reads a plan's facts from its manifest: no TensorRT on the head node is needed (none is
    installed here, so loading it would fail), and a plan whose manifest cannot say how to feed it is refused."""
    plan = write_fake_plan(tmp_path, plan_manifest(max_batch=8))
    candidate = manifest_candidate(plan, backend="onnxruntime")  # a plan runs on TensorRT whatever is asked
    assert (candidate.model, candidate.backend, candidate.num_classes, candidate.max_batch) == ("nin", "tensorrt",
                                                                                                1000, 8)
    (tmp_path / "bare").mkdir()
    bare = write_fake_plan(tmp_path / "bare", replace(plan_manifest(), output=None))
    with pytest.raises(UsageError, match="records no output tensor or preprocessing"):
        manifest_candidate(bare)
