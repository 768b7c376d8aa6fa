"""`cnnx triton`: repository layout, configs valid under Triton's own schema and consistent with the
artifact, unsafe names refused, atomic writes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import replace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import cnnx
from cnnx.artifacts import exchange_paths
from cnnx.data import sample_images
from cnnx.deploy import triton
from cnnx.errors import UsageError
from cnnx.manifest import manifest_path, read_manifest
from plans import plan_manifest, write_fake_plan


@pytest.fixture
def artifact(nin_onnx):
    return nin_onnx


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
    assert list(config.dynamic_batching.preferred_batch_size) == []  # only when asked: Triton's guide
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    for warmup in config.model_warmup:
        sample = warmup.inputs[inp.name]
        assert sample.random_data and list(sample.dims) == list(inp.dims)
    report = json.loads(result.stdout)["models"][0]
    assert report["name"] == "nin-fp32" and report["perf_analyzer"].startswith("perf_analyzer -m nin-fp32")


def test_openvino_backend_without_and_with_triton_batching(artifact, tmp_path):
    """Triton's OpenVINO backend compiles a fixed batch of max_batch_size and fails every other batch unless the
    model sets ENABLE_BATCH_PADDING (openvino_backend src/openvino.cc): the batch-1 warm-up failed the load."""
    opts = triton.TritonOptions(backend="openvino", warmup="zero")
    (model,) = triton.add_to_repository([artifact], tmp_path, name="nin_ov", opts=opts)
    config = parse(model.config)
    assert config.name == "nin_ov" and config.backend == "openvino" and config.platform == ""
    assert config.default_model_filename == "model.onnx" and (model.path / "1" / "model.onnx").is_file()
    # by default no Triton batching: the batch is the first dim and OpenVINO runs each request's own batch
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching") and not config.parameters
    assert list(config.input[0].dims) == [-1, 3, 224, 224] and list(config.output[0].dims) == [-1, 1000]
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and list(warmup.inputs["images"].dims) == [1, 3, 224, 224]
    assert warmup.inputs["images"].zero_data

    opts = triton.TritonOptions(backend="openvino", max_batch=4, preferred_batch=(2, 4), queue_delay_us=500)
    (model,) = triton.add_to_repository([artifact], tmp_path, name="nin_ov4", opts=opts)
    config = parse(model.config)
    assert config.max_batch_size == 4 and config.parameters["ENABLE_BATCH_PADDING"].string_value == "YES"
    assert list(config.input[0].dims) == [3, 224, 224]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [w.batch_size for w in config.model_warmup] == [1, 4]


def test_tensorrt_plan_config(fake_plan, tmp_path):
    (model,) = triton.add_to_repository([fake_plan], tmp_path)
    assert model.name == "nin-fp16" and (model.path / "1" / "model.plan").read_bytes() == fake_plan.read_bytes()
    config = parse(model.config)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 16  # the profile's max batch
    assert dict(config.cc_model_filenames) == {"8.9": "model.plan"}
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.dynamic_batching.preferred_batch_size) == []
    assert [w.batch_size for w in config.model_warmup] == [1, 16]
    assert "the server's TensorRT must be exactly this version" in model.config.read_text()
    with pytest.raises(UsageError, match="outside the plan's profile batches 1 to 16"):
        triton.add_to_repository([fake_plan], tmp_path / "other", opts=triton.TritonOptions(max_batch=64))
    with pytest.raises(UsageError, match="GPU"):
        triton.add_to_repository([fake_plan], tmp_path / "other", opts=triton.TritonOptions(kind="cpu"))


def test_tensorrt_warmup_stays_within_the_profile(tmp_path):
    """The TensorRT backend rejects batches below the profile's minimum, and a failed warm-up fails the load:
    a plan built with --min-batch 4 is warmed up at 4 and its max, never at 1."""
    manifest = plan_manifest(max_batch=8, version_compatible=True)
    manifest = replace(manifest, profile={**manifest.profile, "min": [4, 3, 224, 224], "min_batch": 4})
    plan = write_fake_plan(tmp_path, manifest)
    (model,) = triton.add_to_repository([plan], tmp_path / "repo")
    assert [w.batch_size for w in parse(model.config).model_warmup] == [4, 8]
    assert "--backend-config=tensorrt,version-compatible=true" in model.config.read_text()
    (model,) = triton.add_to_repository([plan], tmp_path / "repo", name="b4", opts=triton.TritonOptions(max_batch=4))
    assert [w.batch_size for w in parse(model.config).model_warmup] == [4]
    with pytest.raises(UsageError, match="outside the plan's profile batches 4 to 8"):
        triton.add_to_repository([plan], tmp_path / "repo", name="b2", opts=triton.TritonOptions(max_batch=2))


def test_python_kind_layout_and_config(run_cli, artifact, tmp_path):
    repo = tmp_path / "repo"
    result = run_cli("triton", artifact, "--repo", repo, "--python", "--backend", "openvino", "--topk", "3",
                     "--max-batch", "8", "--json")
    assert result.exit_code == 0, result.output
    model = repo / "nin-fp32"
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == \
        ["1", "1/model.json", "1/model.onnx", "1/model.py", "config.pbtxt", "labels.txt"]
    assert (model / "1" / "model.py").read_bytes() == triton.PYTHON_MODEL_SOURCE.read_bytes()
    config = parse(model / "config.pbtxt")
    assert config.backend == "python" and config.platform == "" and config.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input] == [
        ("images", model_config_pb2.TYPE_FP32, [3, 224, 224], True),
        ("image_bytes", model_config_pb2.TYPE_STRING, [1], True)]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("logits", model_config_pb2.TYPE_FP32, [1000]), ("labels", model_config_pb2.TYPE_STRING, [3]),
        ("probabilities", model_config_pb2.TYPE_FP32, [3])]
    assert {k: v.string_value for k, v in config.parameters.items()} == \
        {"artifact": "model.onnx", "runtime": "openvino", "topk": "3"}
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert [w.batch_size for w in config.model_warmup] == [1, 8]
    report = json.loads(result.stdout)["models"][0]
    assert report["platform"] == "python" and report["perf_analyzer"] is None


def test_python_kind_refusals(run_cli, artifact, fake_plan, tmp_path):
    for args, message in (((artifact, "--topk", "3"), "--topk applies to the python kind only"),
                          ((fake_plan, "--python"), "the python kind serves ONNX artifacts"),
                          ((artifact, "--python", "--kind", "gpu"), "on CPU only")):
        result = run_cli("triton", *args, "--repo", tmp_path / "repo")
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "repo").exists()


def test_printed_commands_are_shell_quoted(run_cli, artifact, tmp_path):
    repo = tmp_path / "my repo"
    result = run_cli("triton", artifact, "--repo", repo)
    assert result.exit_code == 0, result.output
    (serve,) = [line for line in result.stdout.splitlines() if line.startswith("serve: ")]
    words = shlex.split(serve.removeprefix("serve: "))
    assert words[words.index("-v") + 1] == f"{repo.resolve()}:/models"
    (measure,) = [line for line in result.stdout.splitlines() if line.startswith("measure: ")]
    assert shlex.split(measure.removeprefix("measure: "))[:3] == ["perf_analyzer", "-m", "nin-fp32"]


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


def test_force_never_leaves_the_model_folder_missing(artifact, tmp_path, monkeypatch):
    """A server polling the repository must never see the model vanish while --force replaces it: the model
    folder exists after every rename or swap (Linux: one renameat2 RENAME_EXCHANGE)."""
    repo = tmp_path / "repo"
    (model,) = triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=2))
    seen = []

    def watched(function):
        def call(*args, **kwargs):
            result = function(*args, **kwargs)
            seen.append((function.__name__, model.path.exists()))
            return result
        return call

    for name in ("rename", "replace"):
        monkeypatch.setattr(triton.os, name, watched(getattr(os, name)))
    monkeypatch.setattr(triton, "exchange_paths", watched(triton.exchange_paths))
    triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=4), force=True)
    assert seen and all(exists for _, exists in seen), seen
    assert parse(model.config).max_batch_size == 4 and [p.name for p in repo.iterdir()] == ["nin-fp32"]


def test_force_without_an_atomic_swap_falls_back_to_two_renames(artifact, tmp_path, monkeypatch):
    """Where the OS has no renameat2 (macOS, Windows, old kernels), --force still replaces the folder."""
    monkeypatch.setattr(triton, "exchange_paths", lambda a, b: False)
    repo = tmp_path / "repo"
    triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=2))
    (model,) = triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=4), force=True)
    assert model.replaced and parse(model.config).max_batch_size == 4
    assert [p.name for p in repo.iterdir()] == ["nin-fp32"]


def test_exchange_paths_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, text in ((a, "A"), (b, "B")):
        folder.mkdir()
        (folder / "f").write_text(text)
    assert exchange_paths(a, b) is (sys.platform == "linux")
    if sys.platform == "linux":
        assert (a / "f").read_text() == "B" and (b / "f").read_text() == "A"
        with pytest.raises(FileNotFoundError):
            exchange_paths(a, tmp_path / "missing")


def test_a_failed_write_leaves_no_half_written_model(artifact, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    real_copy = shutil.copyfile

    def copy_then_fail(src, dst, *args, **kwargs):
        real_copy(src, dst, *args, **kwargs)
        if str(dst).endswith("model.onnx"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton.shutil, "copyfile", copy_then_fail)
    with pytest.raises(UsageError, match="no space left on the device"):  # exit 2, not an internal error
        triton.add_to_repository([artifact], repo)
    assert list(repo.iterdir()) == []  # neither the model folder nor its temporary folder

    # with --force, a failure keeps the previous model folder intact
    monkeypatch.setattr(triton.shutil, "copyfile", real_copy)
    (model,) = triton.add_to_repository([artifact], repo, opts=triton.TritonOptions(max_batch=2))
    monkeypatch.setattr(triton.shutil, "copyfile", copy_then_fail)
    with pytest.raises(UsageError, match="no space left on the device"):
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


def test_a_model_folder_is_assembled_outside_the_repository(artifact, tmp_path, monkeypatch):
    """Triton takes every subfolder of a repository for a model, hidden ones too: a half-written folder that a
    killed run leaves there fails the next server start ("Poll failed for model directory", seen on the real
    2.51 server). While cnnx writes, the repository holds finished model folders only."""
    repo = tmp_path / "repo"
    seen_while_writing = []
    real_fill = triton._fill_model_folder

    def fill_and_look(folder, plan):
        real_fill(folder, plan)
        seen_while_writing.append(sorted(p.name for p in repo.iterdir() if p.is_dir()))

    monkeypatch.setattr(triton, "_fill_model_folder", fill_and_look)
    triton.add_to_repository([artifact], repo)
    triton.add_to_repository([artifact], repo, force=True)  # a replacement too
    assert seen_while_writing == [[], ["nin-fp32"]]
    assert sorted(p.name for p in repo.iterdir()) == ["nin-fp32"]


def test_what_a_killed_run_left_is_removed_by_the_next(artifact, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    staging = triton.staging_folder(repo)
    assert staging == tmp_path  # beside the repository, on its file system
    left = staging / ".repo.cnnx-triton.nin-fp32.k1ll3d.partial"  # SIGKILL skips every cleanup
    (left / "1").mkdir(parents=True)
    triton.add_to_repository([artifact], repo)
    assert not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["repo"]
