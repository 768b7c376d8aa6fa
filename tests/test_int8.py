"""INT8 Q/DQ export: TensorRT and CPU forms, calibration data, cache, held-out accuracy, rescue, bad input.

Real photos only: cnnx's shipped samples and scikit-image's bundled photos (no mocks)."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnxruntime.quantization.calibrate import load_tensors_data
from PIL import Image

from cnnx import parity
from cnnx.backends.onnxruntime import OnnxRuntimeRunner
from cnnx.backends.torch import TorchRunner
from cnnx.data import SAMPLE_HOLDOUT_NAMES, sample_images, sample_split
from cnnx.errors import UsageError
from cnnx.export import int8, qdq_tensorrt
from cnnx.export.calibration import augmentations, load_calibration, split_holdout
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.models.registry import get_spec
from cnnx.precisions import AUTO_CALIBRATION_METHODS
from cnnx.weights import create_model
from placement import assert_nvidia_placement

CALIB = 16  # calibration tensors in the tests: 6 sample photos + deterministic augmentations
BIG = {"vgg11", "vgg11-lrn", "vgg13", "vgg16-c", "vgg16", "vgg19", "resnet152", "resnext101-32x8d",
       "resnext101-64x4d", "inception-resnet-v2", "resnet101", "inception-v3", "inception-resnet-v1"}


def inits(proto):
    return {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}


@pytest.fixture(scope="module")
def resnet18_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    results = export_model(ExportOptions("resnet18", precisions=("fp32", "int8"), out_dir=out, calib_data="samples",
                           calib_size=CALIB))
    return out, {r.manifest.precision: r for r in results}


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """12 real photos from scikit-image, as files of a user's folder."""
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "horse",
                 "immunohistochemistry", "rocket", "hubble_deep_field"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return folder


# --- structure of the two Q/DQ forms ---------------------------------------------------------------

def test_tensorrt_form_is_symmetric_int8_per_channel_without_bias_quantization(resnet18_export):
    out, results = resnet18_export
    proto = onnx.load(str(results["int8"].path))
    values = inits(proto)
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq, "no Q/DQ nodes"
    for node in qdq:
        assert len(node.input) == 3 and node.input[2] in values, f"{node.name} has no explicit zero point"
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8, f"{node.name}: zero point {zero_point.dtype}, TensorRT needs int8"
        assert not zero_point.any(), f"{node.name}: non-zero zero point (TensorRT needs symmetric)"
        if node.op_type == "DequantizeLinear" and node.input[0] in values:
            assert values[node.input[0]].dtype == np.int8, "int32 (bias) dequantization: TensorRT rejects it"
    producers = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 20
    for conv in convs:
        weight_dq = producers[conv.input[1]]
        assert weight_dq.op_type == "DequantizeLinear"
        weight, scale = values[weight_dq.input[0]], values[weight_dq.input[1]]
        assert scale.shape == (weight.shape[0],), "Conv weight scales must be per output channel"
        axis = {a.name: a.i for a in weight_dq.attribute}.get("axis", 1)
        assert axis == 0
        if len(conv.input) > 2:  # bias stays float
            assert conv.input[2] in values and values[conv.input[2]].dtype == np.float32
    details = results["int8"].manifest.precision_details
    assert details["target"] == "tensorrt" and details["target_is_default"]
    assert details["qdq"]["nonzero_zero_points"] == 0 and details["qdq"]["zero_point_types"] == ["int8"]


def test_tensorrt_form_follows_nvidias_placement_rules(resnet18_export):
    """NVIDIA's Q/DQ placement for TensorRT (export/qdq_tensorrt.py, with its sources), on resnet18's graph: every
    conv reads its input through Q/DQ; a layer's output is quantized only where it is a residual skip (the
    downsample convs); every residual Add, downsample blocks included, has its skip input quantized and its
    branch (a conv's output) in float; the stem's MaxPool runs between quantized tensors; the classifier's
    precision is the one its measurement chose."""
    _, results = resnet18_export
    proto = onnx.load(str(results["int8"].path))
    assert_nvidia_placement(proto, results["int8"].manifest.precision_details)
    producers = {o: n for n in proto.graph.node for o in n.output}
    adds = [n for n in proto.graph.node if n.op_type == "Add"]
    skips_from_convs = [a for a in adds if any(producers[i].op_type == "DequantizeLinear"
                                               and producers.get(producers[producers[i].input[0]].input[0],
                                                                 onnx.NodeProto()).op_type == "Conv"
                                               for i in a.input)]
    assert len(adds) == 8 and len(skips_from_convs) == 3  # the three downsample blocks' skips are int8 too
    details = results["int8"].manifest.precision_details
    assert details["placement"]["residual_adds_one_input_quantized"] == 8
    assert details["placement"]["pool_inputs_quantized"] == 1
    choice = details["classifier"]
    assert choice["precision"] in ("int8", "float") and set(choice["probe_sqnr_db"]) == {"int8", "float"}


def test_a_float_layer_reads_float_values_behind_a_shared_pool(resnet18_export):
    """resnet18's stem MaxPool feeds layer1.0's conv1 and the residual Add's skip. With conv1 kept in float
    (the rescue's way to remove its input noise), the pool must not run between Q/DQ for the Add's sake:
    MaxPool commutes with Q/DQ, so conv1 would read exactly the quantized values and gain nothing."""
    _, results = resnet18_export
    proto = onnx.load(str(results["fp32"].path))
    pool = next(n for n in proto.graph.node if n.op_type == "MaxPool")
    readers = [n.name for n in proto.graph.node if pool.output[0] in n.input]
    conv = next(name for name in readers if name.endswith("Conv"))
    assert (pool.name, 0) in qdq_tensorrt.quantized_edges(proto)  # all its readers quantized: between Q/DQ
    assert (pool.name, 0) not in qdq_tensorrt.quantized_edges(proto, [conv])


def _pool_chain(float_reader: bool) -> onnx.ModelProto:
    """conv -> relu -> maxpool -> maxpool -> conv, and with `float_reader` a third conv reading the first pool."""
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), f"w{i}") for i in range(3)]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
             helper.make_node("MaxPool", ["r0"], ["p0"], name="pool0", kernel_shape=[2, 2]),
             helper.make_node("MaxPool", ["p0"], ["p1"], name="pool1", kernel_shape=[2, 2]),
             helper.make_node("Conv", ["p1", "w1"], ["y"], name="conv1")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if float_reader:
        nodes.append(helper.make_node("Conv", ["p0", "w2"], ["z"], name="conv2"))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "pools", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              outputs, weights)
    return helper.make_model(graph)


@pytest.mark.parametrize("float_reader", [False, True])
def test_a_maxpool_between_quantized_tensors_keeps_its_input_scale(float_reader):
    """Rule 5: a MaxPool's maxima are on its input's grid, so its output's Q takes its input's scale (a chain
    of pools the first one's) and rounds nothing again. A pool that a float layer also reads runs in float
    (its input is not quantized): its output's Q keeps the output's own range, which the next pool inherits."""
    ranges = {"x": (-1.0, 1.0), "r0": (0.0, 2.0), "p0": (0.0, 3.0), "p1": (0.0, 4.0)}
    floats = ["conv2"] if float_reader else []
    placed = qdq_tensorrt.place(_pool_chain(float_reader), ranges, floats)
    values = {i.name: float(onnx.numpy_helper.to_array(i)) for i in placed.graph.initializer if i.name.endswith(
        "_qdq_scale") and not i.dims}
    scale = {tensor: values.get(f"{tensor}_qdq_scale") for tensor in ("r0", "p0", "p1")}

    def step(peak: float) -> float:
        return float(np.float32(peak / 127))

    if float_reader:  # pool0 runs in float; pool1 runs between its quantized input and output
        assert scale == {"r0": None, "p0": step(3.0), "p1": step(3.0)}
    else:
        assert scale == {"r0": step(2.0), "p0": step(2.0), "p1": step(2.0)}
    assert qdq_tensorrt.pooled_ranges(_pool_chain(False), ranges)["p1"] == (0.0, 2.0)  # no edges: every MaxPool


def test_cpu_form_uses_uint8_activations_and_int8_weights(resnet18_export, tmp_path):
    out, results = resnet18_export
    calib = load_calibration("samples", get_spec("resnet18"), CALIB)
    fp32_path = results["fp32"].path
    target = tmp_path / "cpu.onnx"
    expected = _expected("resnet18", calib)
    details, _ = int8.build_int8(fp32_path, onnx.load(str(fp32_path)), target, calib=calib,
                                 holdout_expected=expected,
                                 method="minmax", target="cpu", exclude=None, cache_dir=tmp_path / "cache",
                                 key_parts={"model": "resnet18"})
    proto = onnx.load(str(target))
    values = inits(proto)
    activation_q = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_q and all(values[n.input[2]].dtype == np.uint8 for n in activation_q)
    producers = {o: n for n in proto.graph.node for o in n.output}
    for conv in (n for n in proto.graph.node if n.op_type == "Conv"):
        weight_dq = producers[conv.input[1]]
        assert values[weight_dq.input[0]].dtype == np.int8
    assert details["activation_type"] == "uint8"
    assert details["recipe"]["cpus"] in ("vnni", "any") and details["recipe"]["weight_bits"] in (7, 8)
    assert parity.compare(expected, OnnxRuntimeRunner(target)(calib.holdout))["sqnr_db"] > 20
    portable = tmp_path / "any.onnx"  # for every x86 CPU: 7-bit weights, which u8s8 kernels cannot saturate
    details, _ = int8.build_int8(fp32_path, onnx.load(str(fp32_path)), portable, calib=calib,
                                 holdout_expected=expected, method="minmax", target="cpu", exclude=None,
                                 cache_dir=tmp_path / "cache", key_parts={"model": "resnet18"}, cpus="any")
    assert details["recipe"]["weight_bits"] == 7 and details["calibration"]["cache"]["status"] == "cache hit"
    values = inits(onnx.load(str(portable)))
    weights = [v for v in values.values() if v.dtype == np.int8 and v.ndim == 4]
    assert weights and max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64


def _expected(name, calib):
    return TorchRunner(create_model(name))(calib.holdout)


# --- manifest, held-out check, cache --------------------------------------------------------------

def test_int8_manifest_and_check_use_held_out_photos_only(resnet18_export):
    out, results = resnet18_export
    manifest = json.loads((out / "resnet18-int8.json").read_text())
    details = manifest["precision_details"]
    assert manifest["precision"] == "int8" and manifest["artifact"] == "resnet18-int8.onnx"
    held = set(details["holdout"]["files"])
    assert held == set(SAMPLE_HOLDOUT_NAMES)
    assert not held & set(details["calibration"]["photos"])
    check = manifest["parity"]
    assert check["inputs"]["held_out"] and check["inputs"]["random"] == 0
    assert check["batch_sizes"] == [1, len(SAMPLE_HOLDOUT_NAMES)]
    assert check["thresholds"] == parity.DEFAULT_THRESHOLDS["int8"].to_dict()
    assert manifest["parity"]["passed"], manifest["parity"]["failures"]
    for metric in ("sqnr_db", "cosine", "top1", "top5"):
        assert metric in details["accuracy"]
    assert details["calibration"]["cache"]["status"] == "computed"
    assert details["calibration"]["method"] == "minmax" and details["calibration"]["count"] == CALIB


def test_sample_split_and_augmentation_are_deterministic():
    calib, held = sample_split()
    assert len(calib) == 6 and len(held) == 4 and not set(calib) & set(held)
    assert sorted(calib + held) == sample_images()
    spec = get_spec("resnet18")
    a, b = load_calibration("samples", spec, 20), load_calibration("samples", spec, 20)
    assert a.sha256 == b.sha256 and a.tensors.shape == (20, 3, 224, 224)
    assert len({t.tobytes() for t in a.tensors}) == 20, "augmented tensors must differ"
    assert len(augmentations()) == 32


def test_cache_is_reused_and_invalidated_by_data_method_or_forced(resnet18_export, tmp_path):
    out, results = resnet18_export
    spec = get_spec("resnet18")
    fp32_path = results["fp32"].path
    fp32 = onnx.load(str(fp32_path))
    calib = load_calibration("samples", spec, 8)
    expected = _expected("resnet18", calib)

    def build(calib, method="minmax", recalibrate=False):
        return int8.build_int8(fp32_path, fp32, tmp_path / "q.onnx", calib=calib, holdout_expected=expected,
                               method=method, target="tensorrt", exclude=None, cache_dir=out / ".calibration",
                               key_parts={"model": "resnet18", "weights": {"seed": 0}}, recalibrate=recalibrate)[0]

    first = build(calib)["calibration"]
    assert first["cache"]["status"] == "computed"
    assert (out / ".calibration" / f"{first['cache']['key']}.json").is_file()
    again = build(calib)
    assert again["calibration"]["cache"]["status"] == "cache hit" and "calibrate" not in again["timings_s"]
    assert again["calibration"]["cache"]["key"] == first["cache"]["key"]
    other_data = load_calibration("samples", spec, 9)
    changed = build(other_data)["calibration"]["cache"]
    assert changed["status"] == "computed" and changed["key"] != first["cache"]["key"]
    other_method = build(calib, method="percentile")["calibration"]["cache"]
    assert other_method["status"] == "computed" and other_method["key"] != first["cache"]["key"]
    forced = build(calib, recalibrate=True)["calibration"]["cache"]
    assert forced["status"].startswith("recalibrated") and forced["key"] == first["cache"]["key"]


def test_auto_calibration_keeps_the_method_the_probe_finds_most_accurate(resnet18_export, tmp_path):
    """Issue 22: minmax keeps the outliers trained networks need, mse's clipping suits activations without
    them; "auto" judges both on calibration tensors their ranges never saw, keeps the better and records both
    numbers (tests/test_trained.py shows it keeping minmax on the trained network)."""
    out, results = resnet18_export
    fp32_path = results["fp32"].path
    calib = load_calibration("samples", get_spec("resnet18"), 16)
    details, _ = int8.build_int8(fp32_path, onnx.load(str(fp32_path)), tmp_path / "auto.onnx", calib=calib,
                                 holdout_expected=_expected("resnet18", calib), method="auto", target="tensorrt",
                                 exclude=None, cache_dir=tmp_path / "cache", key_parts={"model": "resnet18"})
    choice = details["calibration"]["auto"]
    assert set(choice["probe_sqnr_db"]) == set(AUTO_CALIBRATION_METHODS) == {"minmax", "mse"}
    assert choice["probe"].startswith("the first 8 calibration tensors")  # a third of 16 is too few to judge by
    assert choice["chosen"] == max(choice["probe_sqnr_db"], key=choice["probe_sqnr_db"].get)
    assert details["calibration"]["method"] == choice["chosen"]
    # each candidate's ranges (calibrated without the judged tensors) and the chosen method's on all of them
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    with pytest.raises(UsageError, match="at least 16 calibration tensors"):
        int8.build_int8(fp32_path, onnx.load(str(fp32_path)), tmp_path / "few.onnx", calib=load_calibration(
            "samples", get_spec("resnet18"), 10), holdout_expected=_expected("resnet18", calib), method="auto",
            target="tensorrt", exclude=None, cache_dir=tmp_path / "cache", key_parts={"model": "resnet18"})


def test_mse_calibration_clips_and_gains_on_held_out_photos(resnet18_export, tmp_path):
    """Issue 22: `--calib-method mse` clips the long tails of the seeded network's activations (narrower ranges than
    minmax on most tensors, never wider) and its artifact is closer to fp32 on the held-out photos than minmax's."""
    out, results = resnet18_export
    fp32_path = results["fp32"].path
    calib = load_calibration("samples", get_spec("resnet18"), CALIB)
    expected = _expected("resnet18", calib)
    details, _ = int8.build_int8(fp32_path, onnx.load(str(fp32_path)), tmp_path / "mse.onnx", calib=calib,
                                 holdout_expected=expected, method="mse", target="tensorrt",
                                 exclude=None, cache_dir=tmp_path / "cache", key_parts={"model": "resnet18"})
    assert details["calibration"]["method"] == "mse"
    assert_nvidia_placement(onnx.load(str(tmp_path / "mse.onnx")), details)  # clipped ranges differ around pools
    [mse_cache] = (tmp_path / "cache").glob("*.json")
    minmax_key = results["int8"].manifest.precision_details["calibration"]["cache"]["key"]
    minmax_cache = out / ".calibration" / f"{minmax_key}.json"
    peaks = [{name: float(np.abs(t.range_value).max()) for name, t in load_tensors_data(cache).data.items()}
             for cache in (mse_cache, minmax_cache)]
    assert peaks[0].keys() == peaks[1].keys()
    narrower = sum(peaks[0][n] < 0.95 * peaks[1][n] for n in peaks[0])
    assert all(peaks[0][n] <= peaks[1][n] * 1.0001 for n in peaks[0]) and narrower > 0.8 * len(peaks[0])
    minmax_sqnr, mse_sqnr = (parity.compare(expected, OnnxRuntimeRunner(path)(calib.holdout))["sqnr_db"]
                             for path in (results["int8"].path, tmp_path / "mse.onnx"))
    assert mse_sqnr > minmax_sqnr + 0.3, (mse_sqnr, minmax_sqnr)


def test_export_reuses_cache_on_the_next_export(resnet18_export):
    out, results = resnet18_export
    [again] = export_model(ExportOptions("resnet18", precisions=("int8",), out_dir=out, calib_data="samples",
                                         calib_size=CALIB, check=False))
    assert again.manifest.precision_details["calibration"]["cache"]["status"] == "cache hit"


# --- user folders, files, and everything that must fail before anything is written -----------------

def test_user_folder_holds_out_every_fifth_photo(photo_folder):
    spec = get_spec("resnet18")
    files = sorted(photo_folder.iterdir())
    calib_files, held = split_holdout(files)
    assert [f.name for f in held] == [files[4].name, files[9].name]
    calib = load_calibration(photo_folder, spec, 10)
    assert calib.tensors.shape[0] == 10 and calib.holdout.shape[0] == 2
    assert set(calib.holdout_described["files"]) == {f.name for f in held}


def test_npy_calibration_tensors(tmp_path):
    spec = get_spec("resnet18")
    calib = load_calibration("samples", spec, 8)
    np.save(tmp_path / "calib.npy", calib.tensors)
    loaded = load_calibration(tmp_path / "calib.npy", spec, 8)
    assert loaded.sha256 == calib.sha256 and loaded.described["source"] == "file"
    np.savez(tmp_path / "calib.npz", images=calib.tensors)
    assert load_calibration(tmp_path / "calib.npz", spec, 4).tensors.shape == (4, 3, 224, 224)


def test_random_calibration_only_when_asked_and_recorded():
    calib = load_calibration("random", get_spec("resnet18"), 4)
    assert calib.described["random"] is True and "warning" in calib.described


def _assert_fails_and_writes_nothing(tmp_path, match, **kw):
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=match) as info:
        export_model(ExportOptions("resnet18", precisions=("fp32", "int8"), out_dir=out, **kw))
    assert not out.exists() or not any(out.rglob("*")), "files were left behind"
    return info.value


def test_no_calibration_data_is_a_usage_error(tmp_path):
    error = _assert_fails_and_writes_nothing(tmp_path, "needs calibration data")
    assert "--calib-data" in error.hint and "samples" in error.hint


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_fails_and_writes_nothing(tmp_path, "no images", calib_data=tmp_path / "empty", calib_size=1)


def test_non_image_files(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(6):
        shutil.copy(sample_images()[i], folder / f"{i}.jpg")
    (folder / "0.jpg").write_text("this is not a JPEG")
    _assert_fails_and_writes_nothing(tmp_path, "0.jpg.*not a readable image", calib_data=folder, calib_size=4)
    only_text = tmp_path / "text"
    only_text.mkdir()
    (only_text / "notes.txt").write_text("no photos here")
    _assert_fails_and_writes_nothing(tmp_path, "no images", calib_data=only_text, calib_size=1)


def test_wrongly_shaped_npy(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((4, 3, 299, 299), np.float32))
    error = _assert_fails_and_writes_nothing(tmp_path, "shape", calib_data=tmp_path / "wrong.npy", calib_size=2)
    assert "(4, 3, 299, 299)" in error.message and "3, 224, 224" in error.message


def test_too_few_images_for_calib_size(tmp_path, photo_folder):
    _assert_fails_and_writes_nothing(tmp_path, "too few calibration images", calib_data=photo_folder,
                                     calib_size=11)
    _assert_fails_and_writes_nothing(tmp_path, "too few calibration images", calib_data="samples",
                                     calib_size=10_000)


def test_bad_options(tmp_path):
    _assert_fails_and_writes_nothing(tmp_path, "calibration method", calib_data="samples", calib_method="kl")
    _assert_fails_and_writes_nothing(tmp_path, "INT8 target", calib_data="samples", int8_target="gpu")


def test_unknown_excluded_node_fails_before_writing(tmp_path):
    _assert_fails_and_writes_nothing(tmp_path, "no node named", calib_data="samples", calib_size=4,
                                     int8_exclude=["no_such_conv"])


# --- rescue and the whole zoo ----------------------------------------------------------------------

def test_rescue_finds_an_outlier_channel_and_meets_the_target(tmp_path):
    """Trained CNNs often have a few activation channels far larger than the rest, which wreck per-tensor
    int8. Here one conv output channel of NiN is scaled up 300x and the next conv scales its input back
    down: the fp32 function is unchanged (ReLU is positively homogeneous), but int8 collapses. The rescue
    must find that layer pair and keep it in float."""
    import torch

    import cnnx

    state = cnnx.create_model("nin").state_dict()
    weights = [k for k in state if k.endswith(".weight")]
    hot, consumer = weights[3], weights[4]  # conv2 (5x5) and the 1x1 conv after it
    state[hot][0] *= 300
    state[hot.replace("weight", "bias")][0] *= 300
    state[consumer][:, 0] /= 300
    ckpt = tmp_path / "outlier-nin.pth"
    torch.save(state, ckpt)
    [result] = export_model(ExportOptions("nin", precisions=("int8",), out_dir=tmp_path / "out", weights=ckpt,
                            calib_data="samples", calib_size=CALIB, int8_exclude="auto"))
    details = result.manifest.precision_details
    rescue, floats = details["rescue"], details["float_layers"]
    assert rescue["sqnr_before_db"] < 10, rescue  # the outlier really breaks plain int8
    assert rescue["met_target"] and rescue["sqnr_after_db"] >= int8.TARGET_SQNR_DB, rescue
    assert result.passed, result.check.failures
    proto = onnx.load(str(result.path))
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    # the tensorrt form quantizes per reader: keeping the outlier's reader float is enough (the cpu form's
    # quantizer would also need its producer, qdq_forms.Quantizer.float_nodes)
    assert set(floats["nodes"]) == {convs[4]}
    values = inits(proto)
    for name in floats["nodes"]:  # an excluded layer keeps its fp32 weights
        node = next(n for n in proto.graph.node if n.name == name)
        assert values[node.input[1]].dtype == np.float32
    assert 0 < floats["float_mac_share"] < 0.5


def test_rescue_keeps_no_float_layers_when_they_do_not_pay(tmp_path):
    """Without a dominant culprit (seeded ResNet: noise spread over every layer) float layers that buy less
    than RESCUE_MIN_GAIN_DB are not kept: they would cost speed for nothing. (The classifier's own choice comes
    before the rescue and is not one of its float layers.)"""
    [result] = export_model(ExportOptions("resnet18", precisions=("int8",), out_dir=tmp_path, calib_data="samples",
                            calib_size=CALIB, int8_exclude="auto"))
    details = result.manifest.precision_details
    rescue, floats, classifier = details["rescue"], details["float_layers"], details["classifier"]
    chosen_before = {classifier["node"]} if classifier["precision"] == "float" else set()
    best = max(t["probe_sqnr_db"] for t in rescue["trials"])
    if best - rescue["probe_sqnr_before_db"] < int8.RESCUE_MIN_GAIN_DB:
        assert set(floats["nodes"]) == chosen_before
    else:
        assert set(floats["nodes"]) > chosen_before
