"""Export + parity for every zoo model, the manifest's claims, and bad input on export/check."""

import json
import xml.etree.ElementTree as ET

import onnx
import pytest
import torch

from cnnx import list_models
from cnnx.artifacts import sha256_file
from cnnx.backends.onnxruntime import OnnxRuntimeRunner
from cnnx.errors import UsageError
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.manifest import manifest_path
from cnnx.models.registry import get_spec
from placement import assert_nvidia_placement

LRN_MODELS = {"alexnet", "vgg11-lrn", "googlenet"}
SLOW = {"vgg11", "vgg11-lrn", "vgg16-c", "vgg19", "resnet152", "resnext101-32x8d", "inception-resnet-v2",
        "inception-v3", "inception-resnet-v1"}
# The export test is most of the suite's time (a big model costs a minute on 2 cores), so it spends it where
# a graph is new. Depth siblings repeat a sibling's blocks a different number of times (checked below by
# test_depth_siblings_repeat_their_siblings_layers): their export adds no new graph.
DEPTH_SIBLINGS = {"vgg13": "vgg11", "vgg16": "vgg19", "resnet101": "resnet152", "resnext101-64x4d": "resnext101-32x8d"}
# fp32 only: their fp16 and int8 conversions meet no layer type that a model exported in all three precisions
# does not (VGG: vgg11-lrn; bottleneck ResNet: resnet50; ResNeXt: resnext50-32x4d; Inception-ResNet: v1).
# inception-v3 (the lowest healthy int8 SQNR, docs/results/int8.md) and the LRN models keep all three.
FP32_ONLY = {"vgg11", "vgg16-c", "vgg19", "resnet152", "resnext101-32x8d", "inception-resnet-v2"}
ALL_PRECISIONS = ("fp32", "fp16", "int8")


def zoo_params():
    return [pytest.param(s, id=s.name, marks=[pytest.mark.slow] if s.name in SLOW else [])
            for s in list_models() if s.name not in DEPTH_SIBLINGS]


def layer_types(name: str) -> set[str]:
    with torch.device("meta"):  # the structure only: no memory, no initialisation
        model = get_spec(name).builder(num_classes=1000)
    return {type(m).__name__ for m in model.modules()}


@pytest.mark.parametrize("name, sibling", DEPTH_SIBLINGS.items(), ids=list(DEPTH_SIBLINGS))
def test_depth_siblings_repeat_their_siblings_layers(name, sibling):
    """What lets the export test leave a depth sibling out: the same family, the same layer types (so the
    same ONNX ops and the same fp16/int8 decisions per op), only more or fewer blocks."""
    spec, other = get_spec(name), get_spec(sibling)
    assert (spec.family, spec.input_shape) == (other.family, other.input_shape)
    assert layer_types(name) == layer_types(sibling)


@pytest.mark.parametrize("spec", zoo_params())
def test_every_model_exports_and_passes_parity_in_every_precision(spec, tmp_path):
    """One export per model (fp32, fp16, int8 share the ONNX export), each artifact checked against eager."""
    precisions = ("fp32",) if spec.name in FP32_ONLY else ALL_PRECISIONS
    results = export_model(ExportOptions(spec.name, precisions=precisions, out_dir=tmp_path,
                           calib_data="samples", calib_size=16))
    assert [r.manifest.precision for r in results] == list(precisions)
    graphs = {}
    for r in results:
        assert r.passed, f"{r.path.name}: {r.check.failures}"
        m = json.loads(manifest_path(r.path).read_text())  # as written on disk
        assert m == r.manifest.to_dict()
        graph = graphs[m["precision"]] = onnx.load(r.path)
        # the manifest holds what it claims
        assert m["artifact_sha256"] == sha256_file(r.path) and m["artifact_bytes"] == r.path.stat().st_size
        assert m["nodes"]["artifact"] == len(graph.graph.node)
        assert m["nodes"]["simplified"] <= m["nodes"]["exported"], "simplification grew the graph"
        assert m["simplify"]["applied"], m["simplify"]
        assert m["opset"] == 20 and any(o.version == 20 for o in graph.opset_import if o.domain == "")
        assert m["weights"] == {"source": "seed", "seed": 0}
        # the TorchScript exporter, seven times faster, except where it fails (cnnx's AlexNet and VGG: adaptive
        # pooling with a dynamic batch): there the dynamo exporter, and the manifest says why
        assert m["exporter"]["name"] == "torchscript" or "TorchScript" in m["exporter"]["fallback_because"]
        assert m["parity"]["passed"]
        assert m["parity"]["batch_sizes"] == ([1, 4] if m["precision"] == "int8" else [1, 12])  # int8: held out
        assert {"torch", "onnx", "onnxruntime", "onnxsim"} <= set(m["tools"])
        assert not list(tmp_path.glob(".*partial")), "temporary files left behind"
        # one file, dynamic batch: the checked bytes (the file, by its sha256 above) ran at batch 1 and 12
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
        same = r.check.batch_agreement  # the first input alone against it inside the full batch
        if m["precision"] == "int8":
            # ORT runs Conv/Gemm in float on dequantized weights, and those kernels are not bit-identical
            # across batch sizes (even with graph optimizations off, one thread); a last-bit difference on a
            # rounding boundary flips one int8 step at the next QuantizeLinear (vgg11: 50.8 dB, max_rel
            # 2.7e-3). Same answer for int8 means: far above the 10 dB gate, same top-5.
            assert same["sqnr_db"] >= 40 and same["top5"] == 1.0, same
        else:
            assert same["max_rel"] <= 1e-3, same
    if len(results) == 1:
        return
    int8 = results[2].manifest.precision_details
    assert int8["qdq"]["nonzero_zero_points"] == 0  # the TensorRT form: symmetric everywhere
    assert_nvidia_placement(graphs["int8"], int8)  # residual skips, Concat, MaxPool, classifier
    assert results[2].check.inputs["held_out"]
    fp16 = results[1]
    graph = graphs["fp16"]
    assert fp16.manifest.precision_details["nodes"] == len(graph.graph.node)
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.graph.initializer) > 0
    kept = fp16.manifest.precision_details["fp32_nodes"]
    if spec.name in LRN_MODELS:
        assert kept and all("LocalResponseNorm" in k["reason"] for k in kept)
    assert fp16.path.stat().st_size < 0.6 * results[0].path.stat().st_size


def test_both_exporters_write_the_same_network(tmp_path):
    """`--exporter torchscript` and `--exporter dynamo` give graphs that compute the same logits (decomposed a little
    differently: GoogLeNet's LRN is 166 nodes against 155 after onnxsim), and fp16 keeps every LocalResponseNorm node
    of either in fp32 (the TorchScript exporter's are found by their module's scope, the dynamo exporter's by its
    metadata)."""
    from cnnx.data import load_batch, sample_images
    from cnnx.export.onnx import torchscript_scope

    assert [torchscript_scope(p) for p in ("lrn1", "features.2", "layer1.0.conv1")] == [
        "/lrn1/", "/features/features.2/", "/layer1/layer1.0/conv1/"]
    results = {name: export_model(ExportOptions("googlenet", precisions=("fp32", "fp16"), out_dir=tmp_path / name,
                                                exporter=name, check=False, target="onnx"))
               for name in ("torchscript", "dynamo")}
    x = load_batch(sample_images()[:4], get_spec("googlenet").preprocess)
    outputs = {name: OnnxRuntimeRunner(r[0].path)(x) for name, r in results.items()}
    assert abs(outputs["torchscript"] - outputs["dynamo"]).max() <= 1e-4 * abs(outputs["dynamo"]).max()
    assert {r[0].manifest.exporter["name"] for r in results.values()} == {"torchscript", "dynamo"}
    for name, (fp32, fp16) in results.items():
        graph = onnx.load(fp32.path).graph
        kept = {k["node"] for k in fp16.manifest.precision_details["fp32_nodes"] if "LocalResponseNorm" in k["reason"]}
        # the LRN's arithmetic of either decomposition: the square, the window sum, the power, the division
        assert {n.op_type for n in graph.node if n.name in kept} >= {"Mul", "AveragePool", "Pow", "Div"}, name


@pytest.fixture(scope="module")
def resnet18_artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return export_model(ExportOptions("resnet18", precisions=("fp32",), out_dir=out))[0].path


def test_check_cli_passes_and_writes_json_and_junit(run_cli, resnet18_artifact, tmp_path):
    junit = tmp_path / "reports" / "parity.xml"
    result = run_cli("check", resnet18_artifact, "--json", "--junit", junit)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] and data["results"][0]["metrics"]["top1"] == 1.0
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.get("name") == "resnet18-fp32.onnx" and case.find("failure") is None


def test_check_fails_with_exit_1_and_an_account_of_the_difference(run_cli, resnet18_artifact, tmp_path):
    junit = tmp_path / "parity.xml"
    result = run_cli("check", resnet18_artifact, "--min-sqnr", "500", "--junit", junit)
    assert result.exit_code == 1
    assert "sqnr_db" in result.output and "needs >= 500" in result.output
    assert ET.parse(junit).getroot().find("testsuite/testcase/failure") is not None


def test_export_cli_writes_artifact_manifest_and_says_what_is_next(run_cli, tmp_path):
    result = run_cli("export", "nin", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nin-fp32.onnx").is_file() and (tmp_path / "nin-fp32.json").is_file()
    assert "PASS" in result.output and "cnnx check" in result.output
    assert "TensorRT engine: not built" in result.output


def test_export_json_output_is_parseable(run_cli, tmp_path):
    result = run_cli("export", "nin", "--out", tmp_path, "--json", "--no-check")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["artifacts"][0]["manifest"]["model"] == "nin" and data["artifacts"][0]["manifest"]["parity"] is None


# --- bad input: exit 2, an actionable message, no traceback, no artifact left behind ---------------------

def assert_clean_usage_error(result, *phrases):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output + result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def test_export_unknown_model(run_cli, tmp_path):
    assert_clean_usage_error(run_cli("export", "googlenett", "--out", tmp_path), "unknown model", "googlenet")
    assert not any(tmp_path.iterdir())


def test_export_with_checkpoint_of_another_model(run_cli, tmp_path):
    import torch

    import cnnx

    ckpt = tmp_path / "r18.pth"
    torch.save(cnnx.create_model("resnet18").state_dict(), ckpt)
    out = tmp_path / "out"
    assert_clean_usage_error(run_cli("export", "resnet34", "--weights", ckpt, "--out", out),
                             "does not fit model 'resnet34'", "missing keys")
    assert not list(out.glob("*"))


def test_export_to_unwritable_folder(run_cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_clean_usage_error(run_cli("export", "nin", "--out", blocker / "sub"), "cannot write to output folder")


@pytest.mark.parametrize("damage", ["truncate", "garbage-without-manifest"])
def test_check_corrupt_artifact(run_cli, resnet18_artifact, tmp_path, damage):
    bad = tmp_path / "resnet18-fp32.onnx"
    if damage == "truncate":
        bad.write_bytes(resnet18_artifact.read_bytes()[:100_000])
        (tmp_path / "resnet18-fp32.json").write_text(resnet18_artifact.with_suffix(".json").read_text())
        assert_clean_usage_error(run_cli("check", bad), "does not match its manifest")
    else:
        bad.write_bytes(b"\x08\x07garbage" * 100)
        assert_clean_usage_error(run_cli("check", bad), "has no manifest")


def test_corrupt_onnx_bytes_are_a_usage_error():
    from cnnx.errors import UsageError

    with pytest.raises(UsageError, match="ONNX Runtime cannot load"):
        OnnxRuntimeRunner(b"\x08\x07garbage" * 100)


def test_image_folder_problems(run_cli, resnet18_artifact, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_usage_error(run_cli("check", resnet18_artifact, "--images", empty), "no images in")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    from cnnx.data import sample_images

    (mixed / "cat.jpg").write_bytes(sample_images()[0].read_bytes())
    (mixed / "notes.png").write_text("this is not an image")
    assert_clean_usage_error(run_cli("check", resnet18_artifact, "--images", mixed), "notes.png",
                             "not a readable image")
    out = tmp_path / "out"
    assert_clean_usage_error(run_cli("export", "nin", "--images", mixed, "--out", out), "notes.png")
    assert not list(out.glob("*.onnx"))


def test_fp16_keeps_overflowing_activations_in_fp32(tmp_path):
    """Trained weights can drive activations past fp16's 65504; those nodes must stay fp32 automatically.
    NiN's last 1x1 conv is scaled up so its output (and the pooled logits) reach about 1e5."""
    import torch

    import cnnx

    model = cnnx.create_model("nin")
    state = model.state_dict()
    last_conv = [k for k in state if k.endswith(".weight")][-1]
    state[last_conv] = state[last_conv] * 3e4
    ckpt = tmp_path / "hot-nin.pth"
    torch.save(state, ckpt)
    fp16 = export_model(ExportOptions("nin", precisions=("fp16",), out_dir=tmp_path / "out", weights=ckpt))[0]
    kept = fp16.manifest.precision_details["fp32_nodes"]
    assert kept and all("near the fp16 limit" in k["reason"] for k in kept)
    assert fp16.check.metrics["nonfinite"] == 0 and fp16.passed, fp16.check.failures
    assert fp16.check.metrics["max_abs"] > 1.0  # logits really are large: ~1e5 scale


def test_a_wrong_simplification_fails_the_check_and_the_unsimplified_graph_is_used(tmp_path, monkeypatch):
    """Simplification is judged by the artifact's parity check (no extra validation run): an onnxsim that
    rewrites a weight wrongly gives a failing artifact, which is made again from the unsimplified graph."""
    import onnxsim
    from onnx import numpy_helper

    real_simplify = onnxsim.simplify

    def wrong_simplify(proto, **kw):
        simplified, ok = real_simplify(proto, **kw)
        conv = next(n for n in simplified.graph.node if n.op_type == "Conv")
        weight = next(i for i in simplified.graph.initializer if i.name == conv.input[1])
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 0.5, weight.name))
        return simplified, ok

    monkeypatch.setattr(onnxsim, "simplify", wrong_simplify)
    [result] = export_model(ExportOptions("nin", out_dir=tmp_path, target="onnx"))
    assert result.passed and result.path.name == "nin-fp32.onnx"
    assert not result.manifest.simplify["applied"]
    assert "failed its parity check" in result.manifest.simplify["rejected"]
    assert "export_again" in result.manifest.timings_s


def test_tool_versions_name_the_installed_distributions():
    """The manifests' tool versions: a package installed under its own name, one installed under another (Pillow
    provides PIL: the slow path, reading every distribution's file list), and nothing for a package not installed."""
    from importlib import metadata

    from cnnx.artifacts import package_version

    assert package_version("onnx") == metadata.version("onnx")
    assert package_version("PIL") == metadata.version("pillow")
    assert package_version("cnnx_no_such_package") is None


def test_an_unknown_exporter_is_refused_before_any_work(tmp_path):
    """From Python (the CLI's choices already refuse it): no model built, no folder made."""
    with pytest.raises(UsageError, match="unknown exporter 'fx'"):
        export_model(ExportOptions("resnet50", out_dir=tmp_path / "out", exporter="fx"))
    assert not (tmp_path / "out").exists()
