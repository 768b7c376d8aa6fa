"""`cnnx triton`: repository layout, configs valid under Triton's own schema and consistent with the
artifact, unsafe names refused, atomic writes."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import cnnx
from cnnx.artifacts import sha256_file
from cnnx.data import sample_images
from cnnx.deploy import triton
from cnnx.errors import UsageError
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.manifest import manifest_path, read_manifest
from plans import plan_manifest, write_fake_plan


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("triton-artifacts")
    return export_model(ExportOptions("nin", precisions=("fp32",), out_dir=out, check=False))[0].path


@pytest.fixture
def fake_plan(tmp_path):
    """A stand-in TensorRT plan (bytes are never run here) with its manifest: profile up to 16, sm 8.9."""
    return write_fake_plan(tmp_path, replace(plan_manifest(max_batch=16), precision="fp16"), name="nin-fp16.plan")


def parse(path) -> model_config_pb2.ModelConfig:
    """Parse with Triton's ModelConfig schema, independently of cnnx's own validation."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_onnx_repository_layout_and_config(run_cli, artifact, tmp_path):
    repo = tmp_path / "repo"
    result = run_cli("triton", artifact, "--repo", repo, "--max-batch", "8", "--instances", "2", "--json")
    assert result.exit_code == 0, result.output
    model = repo / "nin-fp32"
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == \
        ["1", "1/model.json", "1/model.onnx", "config.pbtxt", "labels.txt"]
    assert [p.name for p in repo.iterdir()] == ["nin-fp32"]  # no temporary folder left behind
    assert (model / "1" / "model.onnx").read_bytes() == artifact.read_bytes()
    # the copied manifest still vouches for the copied artifact, so the copy loads with cnnx
    assert read_manifest(model / "1" / "model.onnx").model == "nin"
    predictor = cnnx.load(model / "1" / "model.onnx")
    assert len(predictor.classify(sample_images()[:1])[0]) == 5

    manifest = read_manifest(artifact)
    config = parse(model / "config.pbtxt")
    assert config.name == "nin-fp32" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    (inp,), (out,) = config.input, config.output
    assert inp.name == manifest.input.name and list(inp.dims) == list(manifest.input.dims)
    assert out.name == manifest.output.name and list(out.dims) == list(manifest.output.dims)
    assert inp.data_type == out.data_type == model_config_pb2.TYPE_FP32
    assert out.label_filename == "labels.txt"
    assert (model / "labels.txt").read_text().splitlines()[:2] == ["tench", "goldfish"]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    for warmup in config.model_warmup:
        sample = warmup.inputs[inp.name]
        assert sample.random_data and list(sample.dims) == list(inp.dims)
    report = json.loads(result.stdout)["models"][0]
    assert report["name"] == "nin-fp32" and report["perf_analyzer"].startswith("perf_analyzer -m nin-fp32")


def test_openvino_backend_and_options(artifact, tmp_path):
    opts = triton.TritonOptions(backend="openvino", max_batch=4, preferred_batch=(2, 4), queue_delay_us=500,
                                warmup="zero")
    (model,) = triton.add_to_repository([artifact], tmp_path, name="nin_ov", opts=opts)
    config = parse(model.config)
    assert config.name == "nin_ov" and config.backend == "openvino" and config.platform == ""
    assert config.default_model_filename == "model.onnx" and (model.path / "1" / "model.onnx").is_file()
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert all(w.inputs["images"].zero_data for w in config.model_warmup)


def test_tensorrt_plan_config(fake_plan, tmp_path):
    (model,) = triton.add_to_repository([fake_plan], tmp_path)
    assert model.name == "nin-fp16" and (model.path / "1" / "model.plan").read_bytes() == fake_plan.read_bytes()
    config = parse(model.config)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 16  # the profile's max batch
    assert dict(config.cc_model_filenames) == {"8.9": "model.plan"}
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8, 16]
    with pytest.raises(UsageError, match="exceeds the plan's profile maximum"):
        triton.add_to_repository([fake_plan], tmp_path / "other", opts=triton.TritonOptions(max_batch=64))
    with pytest.raises(UsageError, match="GPU"):
        triton.add_to_repository([fake_plan], tmp_path / "other", opts=triton.TritonOptions(kind="cpu"))


@pytest.mark.parametrize("name", ["..", ".", "", "../escape", "a/b", "/abs/path", ".hidden", "a\\b", "-x"])
def test_names_that_could_escape_the_repository_are_refused(run_cli, artifact, tmp_path, name):
    repo = tmp_path / "repo"
    result = run_cli("triton", artifact, "--repo", repo, "--name", name)
    assert result.exit_code == 2 and "invalid Triton model name" in result.stderr
    assert not repo.exists() or list(repo.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == (["repo"] if repo.exists() else [])


def test_existing_model_folder_kept_unless_force(run_cli, artifact, tmp_path):
    repo = tmp_path / "repo"
    assert run_cli("triton", artifact, "--repo", repo).exit_code == 0
    config = repo / "nin-fp32" / "config.pbtxt"
    before = config.read_text()
    result = run_cli("triton", artifact, "--repo", repo, "--max-batch", "4")
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert config.read_text() == before
    result = run_cli("triton", artifact, "--repo", repo, "--max-batch", "4", "--force")
    assert result.exit_code == 0, result.output
    assert parse(config).max_batch_size == 4
    assert [p.name for p in repo.iterdir()] == ["nin-fp32"]


def test_a_failed_write_leaves_no_half_written_model(artifact, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    real_copy = shutil.copyfile

    def copy_then_fail(src, dst, *args, **kwargs):
        real_copy(src, dst, *args, **kwargs)
        if str(dst).endswith("model.onnx"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError):
        triton.add_to_repository([artifact], repo)
    assert list(repo.iterdir()) == []  # neither the model folder nor its temporary folder

    # with --force, a failure keeps the previous model folder intact
    monkeypatch.setattr(triton.shutil, "copyfile", real_copy)
    (model,) = triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=2))
    monkeypatch.setattr(triton.shutil, "copyfile", copy_then_fail)
    with pytest.raises(OSError):
        triton.add_to_repository([artifact], repo, force=True)
    assert [p.name for p in repo.iterdir()] == ["nin-fp32"]
    assert parse(model.config).max_batch_size == 2 and (model.path / "1" / "model.onnx").is_file()


def test_mismatched_artifact_refused_before_writing(artifact, tmp_path):
    copy = tmp_path / "nin-fp32.onnx"
    copy.write_bytes(artifact.read_bytes()[:-10])
    shutil.copyfile(manifest_path(artifact), manifest_path(copy))
    with pytest.raises(UsageError, match="does not match its manifest"):
        triton.add_to_repository([copy], tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_without_tritonclient_exit_3(run_cli, artifact, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient", None)  # makes `import tritonclient...` fail
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    result = run_cli("triton", artifact, "--repo", tmp_path / "repo")
    assert result.exit_code == 3 and "pip install 'cnnx[triton]'" in result.stderr
    assert not (tmp_path / "repo").exists()


def test_invalid_config_text_is_rejected_by_the_schema():
    with pytest.raises(UsageError, match="ModelConfig"):
        triton.parse_config('name: "x"\nmax_batch_size: 8\nno_such_field: 1\n')
    with pytest.raises(UsageError, match="ModelConfig"):
        triton.parse_config('name: "x"\ninstance_group [ { kind: KIND_TPU } ]\n')
