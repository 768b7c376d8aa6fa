"""The runtime API: cnnx.load + classify on real photos, thread safety, and no PyTorch needed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import cnnx
from cnnx.backends.openvino import OpenVinoRunner
from cnnx.data import imagenet_labels, load_batch, sample_images
from cnnx.errors import UsageError
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.manifest import manifest_path
from cnnx.models.registry import get_spec
from cnnx.runtime import softmax

SKIMAGE_PHOTOS = [Path(skimage.data.__file__).parent / name
                  for name in ("astronaut.png", "chelsea.png", "coffee.png", "camera.png")]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """resnet18 at fp32 and int8 (calibrated on the shipped photos), exported once for this module."""
    out = tmp_path_factory.mktemp("runtime-artifacts")
    results = export_model(ExportOptions("resnet18", precisions=("fp32", "int8"), out_dir=out, calib_data="samples",
                           check=False))
    return {r.manifest.precision: r.path for r in results}


def photos() -> list[Path]:
    return sample_images() + SKIMAGE_PHOTOS


def test_labels_are_the_imagenet_1k_classes_in_index_order():
    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[0] == "tench" and labels[1] == "goldfish" and labels[281] == "tabby"
    assert labels[999] == "toilet tissue"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_load_exposes_the_manifest(artifacts, precision):
    predictor = cnnx.load(artifacts[precision])
    assert predictor.model == "resnet18" and predictor.precision == precision
    assert predictor.backend == "onnxruntime"
    assert predictor.input_shape == ("batch", 3, 224, 224) and predictor.image_shape == (3, 224, 224)
    assert predictor.preprocess.crop == 224 and predictor.preprocess.resize == 256


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_classify_real_photos(artifacts, precision):
    predictor = cnnx.load(artifacts[precision])
    files = photos()
    results = predictor.classify(files, topk=5)
    assert len(results) == len(files)
    # the same numbers as preprocessing with the model spec's transform and running the logits by hand
    logits = predictor(load_batch(files, get_spec("resnet18").preprocess))
    assert logits.dtype == np.float32 and logits.shape == (len(files), 1000)
    probs = softmax(logits)
    labels = imagenet_labels()
    for row, predictions in zip(probs, results):
        assert len(predictions) == 5
        top = np.argsort(-row, kind="stable")[:5]
        assert [p.label for p in predictions] == [labels[i] for i in top]
        np.testing.assert_allclose([p.probability for p in predictions], row[top], rtol=1e-6)
        assert all(a.probability >= b.probability for a, b in zip(predictions, predictions[1:]))
    assert abs(probs.sum(axis=1) - 1).max() < 1e-6


def test_int8_agrees_with_fp32_on_photos(artifacts):
    fp32 = cnnx.load(artifacts["fp32"]).classify(photos(), topk=5)
    int8 = cnnx.load(artifacts["int8"]).classify(photos(), topk=1)
    for full, quantized in zip(fp32, int8):
        assert quantized[0].label in [p.label for p in full]


def test_classify_accepts_paths_bytes_pil_images_and_arrays(artifacts):
    predictor = cnnx.load(artifacts["fp32"])
    path = SKIMAGE_PHOTOS[1]  # chelsea.png
    array = skimage.data.chelsea()  # HWC uint8
    by_path = predictor.classify(path, topk=3)
    by_str = predictor.classify([str(path)], topk=3)
    assert predictor.classify(path.read_bytes(), topk=3) == by_path  # the encoded file, e.g. an upload
    np.testing.assert_array_equal(predictor.prepare(path.read_bytes()), predictor.prepare(path))
    by_pil = predictor.classify([Image.open(path)], topk=3)
    by_array = predictor.classify(array, topk=3)
    by_nhwc = predictor.classify(np.stack([array, array]), topk=3)
    assert by_path == by_str == by_pil == by_array == by_nhwc[:1] == by_nhwc[1:]
    grey = predictor.classify(skimage.data.camera(), topk=2)  # HW uint8
    assert len(grey) == 1 and len(grey[0]) == 2
    label, probability = by_path[0][0]
    assert isinstance(label, str) and 0 < probability <= 1


def test_bad_inputs_are_usage_errors(artifacts):
    predictor = cnnx.load(artifacts["fp32"])
    with pytest.raises(UsageError, match="uint8"):
        predictor.classify(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(UsageError, match=r"^these 12 bytes are not a readable image \(UnidentifiedImageError: "
                                         r"cannot identify image file\)"):
        predictor.classify([b"not an image"])
    with pytest.raises(UsageError, match="expects input of shape"):
        predictor(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(UsageError, match="topk"):
        predictor.classify(sample_images()[:1], topk=0)
    with pytest.raises(UsageError, match="backend"):
        cnnx.load(artifacts["fp32"], backend="tflite")


def test_load_refuses_an_artifact_that_does_not_match_its_manifest(artifacts, tmp_path):
    copy = tmp_path / "resnet18-fp32.onnx"
    data = bytearray(artifacts["fp32"].read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    manifest_path(copy).write_text(manifest_path(artifacts["fp32"]).read_text())
    with pytest.raises(UsageError, match="does not match its manifest"):
        cnnx.load(copy)


def _hammer(predictor, batches, threads=8, rounds=3):
    """Every batch, `rounds` times, from `threads` threads at once; returns results per batch index."""
    jobs = [i for _ in range(rounds) for i in range(len(batches))]
    with ThreadPoolExecutor(threads) as pool:
        outputs = list(pool.map(lambda i: (i, predictor(batches[i])), jobs))
    return outputs


def _batches():
    spec = get_spec("resnet18")
    files = photos()
    return [load_batch(files[i:i + 2], spec.preprocess) for i in range(0, len(files), 2)]


def test_concurrent_calls_equal_serial_calls_onnxruntime(artifacts):
    predictor = cnnx.load(artifacts["fp32"])
    batches = _batches()
    serial = [predictor(b) for b in batches]
    for i, out in _hammer(predictor, batches):
        np.testing.assert_array_equal(out, serial[i])


@pytest.mark.openvino
@pytest.mark.skipif(OpenVinoRunner.unavailable_reason() is not None,
                    reason=str(OpenVinoRunner.unavailable_reason()))
def test_concurrent_calls_equal_serial_calls_openvino(artifacts):
    predictor = cnnx.load(artifacts["fp32"], backend="openvino", max_requests=4)
    batches = _batches()
    serial = [predictor(b) for b in batches]
    for i, out in _hammer(predictor, batches):
        np.testing.assert_array_equal(out, serial[i])
    # OpenVINO and ONNX Runtime run the same graph
    reference = cnnx.load(artifacts["fp32"])
    np.testing.assert_allclose(serial[0], reference(batches[0]), rtol=1e-3, atol=1e-4)


def _same_outputs(outputs, expected):
    """Equal up to floating-point summation order (another thread split may sum in another order)."""
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected):
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))


@pytest.mark.parametrize("backend", ["onnxruntime", pytest.param("openvino", marks=[
    pytest.mark.openvino, pytest.mark.skipif(OpenVinoRunner.unavailable_reason() is not None,
                                             reason=str(OpenVinoRunner.unavailable_reason()))])])
def test_throughput_mode_gives_latency_mode_outputs_to_concurrent_callers(artifacts, backend):
    """Throughput mode: the backend's own concurrency, every batch answered with its own outputs (in order,
    from run_many, classify and many threads), the same outputs as latency mode."""
    latency = cnnx.load(artifacts["int8"], backend=backend)
    throughput = cnnx.load(artifacts["int8"], backend=backend, threads=2, mode="throughput")
    assert (latency.mode, latency.concurrency) == ("latency", 1) and throughput.mode == "throughput"
    if backend == "openvino":  # OpenVINO's THROUGHPUT hint chooses how many requests keep its streams busy
        optimal = throughput._call.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        assert throughput.concurrency == optimal >= 1
    else:
        assert throughput.concurrency == 2  # one caller per thread
    batches = _batches()
    expected = [latency(b) for b in batches]
    _same_outputs(throughput.run_many(batches), expected)
    hammered = _hammer(throughput, batches, threads=4, rounds=2)
    _same_outputs([out for _, out in hammered], [expected[i] for i, _ in hammered])
    files = photos()
    assert ([[p.label for p in r] for r in throughput.classify(files, topk=3)]
            == [[p.label for p in r] for r in latency.classify(files, topk=3)])
    # the bench's measurement: `callers` calls in flight; every call is answered and timed
    latencies, wall = throughput._call.run_concurrently(batches[0], throughput.concurrency, seconds=0.0,
                                                        min_calls=5)
    assert len(latencies) == 5 and all(ms > 0 for ms in latencies) and wall > 0


def test_unknown_mode_is_a_usage_error(artifacts):
    with pytest.raises(UsageError, match="unknown mode 'fast'"):
        cnnx.load(artifacts["fp32"], mode="fast")


def test_registry_builds_runners_with_every_option_and_refuses_what_a_backend_lacks(artifacts):
    """Issue 20: construction options are the Runner contract (RunOptions through the registry), so a backend is
    never built with options silently dropped: throughput mode reaches ONNX Runtime's callers, and a mode or a
    precision hint a backend does not have is refused before anything is loaded."""
    from cnnx.backends import BACKENDS, RunOptions

    with BACKENDS["onnxruntime"].open(artifacts["fp32"], RunOptions(threads=2, mode="throughput")) as runner:
        assert (runner.mode, runner.concurrency) == ("throughput", 2)
        assert runner.session.get_session_options().intra_op_num_threads == 1  # one thread per caller
    assert runner.session is None  # closed at the end of the block
    with pytest.raises(UsageError, match="onnxruntime-cuda backend has no throughput mode") as err:
        cnnx.load(artifacts["fp32"], backend="onnxruntime-cuda", mode="throughput")
    assert "onnxruntime, openvino" in err.value.hint  # where throughput mode exists
    with pytest.raises(UsageError, match="onnxruntime backend cannot run bf16"):
        BACKENDS["onnxruntime"].open(artifacts["fp32"], RunOptions(precision_hint="bf16"))
    with pytest.raises(UsageError, match="openvino backend does not run 'resnet18-fp32.plan'"):
        BACKENDS["openvino"].open(artifacts["fp32"].with_suffix(".plan"))


def test_a_closed_predictor_says_so(artifacts):
    batch = load_batch(sample_images()[:1], get_spec("resnet18").preprocess)
    with cnnx.load(artifacts["fp32"]) as predictor:
        assert predictor(batch).shape == (1, 1000)
    with pytest.raises(UsageError, match="was closed") as err:
        predictor(batch)
    assert "cnnx.load" in err.value.hint


# Blocks every import of torch (and its submodules) in a fresh interpreter, as in an install without it.
NO_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"torch is blocked in this test (import of {name})")
            return None

    sys.meta_path.insert(0, NoTorch())
""")


def test_runtime_needs_no_torch(artifacts):
    script = NO_TORCH + textwrap.dedent(f"""
        import json
        import cnnx
        predictor = cnnx.load({str(artifacts["fp32"])!r})
        result = predictor.classify([{str(sample_images()[0])!r}], topk=3)
        try:
            import torch
        except ImportError:
            blocked = True
        else:
            blocked = False
        print(json.dumps({{"blocked": blocked, "torch_loaded": "torch" in sys.modules,
                           "labels": [p.label for p in result[0]]}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["blocked"] and not report["torch_loaded"]
    expected = cnnx.load(artifacts["fp32"]).classify(sample_images()[:1], topk=3)[0]
    assert report["labels"] == [p.label for p in expected]


def test_predict_cli_needs_no_torch(artifacts):
    script = NO_TORCH + textwrap.dedent(f"""
        from cnnx.cli import main
        sys.argv = ["cnnx", "predict", {str(artifacts["int8"])!r}, {str(sample_images()[1])!r}, "--json"]
        main()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["classified"] == 1


def test_eval_cli_needs_no_torch(artifacts, tmp_path):
    folder = tmp_path / "data" / "n02123045"  # ImageNet's "tabby"
    folder.mkdir(parents=True)
    for photo in sample_images()[:2]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    script = NO_TORCH + textwrap.dedent(f"""
        from cnnx.cli import main
        sys.argv = ["cnnx", "eval", {str(artifacts["int8"])!r}, "--data", {str(tmp_path / "data")!r}, "--json"]
        main()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["images"] == 2 and report["rows"][0]["precision"] == "int8"


def test_lazy_package_keeps_its_public_names():
    from cnnx import ModelSpec, create_model, get_spec, list_models  # noqa: F401

    for name in ("create_model", "get_spec", "list_models", "ModelSpec", "CnnxError", "UsageError",
                 "CheckFailed", "BackendUnavailable", "__version__", "load", "Predictor", "check", "CheckResult"):
        assert hasattr(cnnx, name) and name in cnnx.__all__ and name in dir(cnnx)
    with pytest.raises(AttributeError):
        cnnx.no_such_name  # noqa: B018
