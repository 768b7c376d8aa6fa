"""Published weights by name (`--pretrained`): the registry's facts, and the download cache on a real HTTP server.

The server is a real `http.server` on the loopback, serving a real state-dict file made here (a seeded
resnet18, saved with torch.save and named torchvision-style after its own sha256 prefix). It is registered as
weights "loopback" of resnet18 with `cnnx.weights.register`, the same path a user's own entry takes. The
refusal paths also use the real registry entries: a mirror that serves the wrong bytes for them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import cnnx
from cnnx.data import IMAGENET_MEAN, IMAGENET_STD
from cnnx.errors import DownloadFailed, UsageError
from cnnx.models.registry import get_spec, list_models
from cnnx.weights import pretrained as registry
from cnnx.weights.download import cache_dir

X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(11))


class LoopbackServer:
    """Serves `routes` (path -> bytes); "/cut/..." paths announce the whole length and send half, then close.
    Records every requested path."""

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path.startswith("/cut/") else body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def requested(self, name: str) -> list[str]:
        return [p for p in self.requests if p.endswith("/" + name)]


@pytest.fixture(scope="module")
def server():
    srv = LoopbackServer()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A real resnet18 state dict, named as torchvision names its files: <name>-<first 8 hex of sha256>.pth."""
    model = cnnx.create_model("resnet18", seed=5)
    folder = tmp_path_factory.mktemp("published")
    raw = folder / "raw.pth"
    torch.save(model.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = raw.rename(folder / f"resnet18-{digest[:8]}.pth")
    with torch.no_grad():
        expected = model(X)
    return path, digest, expected


@pytest.fixture(scope="module")
def loopback(server, seeded):
    """The seeded file as registered weights "loopback" of resnet18, published at /published/ on the server,
    with its own evaluation transform (resize 232, as torchvision's V2 weights)."""
    path, digest, _ = seeded
    body = path.read_bytes()
    for folder in ("published", "mirror", "cut"):
        server.routes[f"/{folder}/{path.name}"] = body
    entry = registry.PretrainedWeights(
        model="resnet18", version="loopback", default=False, publisher="cnnx tests", name="resnet18 seed 5",
        url=f"{server.url}/published/{path.name}", file_name=path.name, sha256=None, sha256_prefix=digest[:8],
        transform={"resize": 232, "crop": 224, "interpolation": "bilinear", "mean": list(IMAGENET_MEAN),
                   "std": list(IMAGENET_STD)},
        transform_input=False, classification=True, top1=0.1, top5=0.5,  # a seeded network is at chance level
        num_params=11_689_512, num_params_m=None, num_params_counts="inference graph", license="Apache-2.0",
        license_source="this test", recipe=None, description="seeded weights served by the test",
        source="tests/test_pretrained.py")
    registry.register(entry)
    yield entry
    registry.unregister(entry)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cnnx cache, and no mirror unless a test sets one."""
    monkeypatch.setenv("CNNX_HOME", str(tmp_path / "cnnx-home"))
    monkeypatch.delenv("CNNX_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "cnnx-home" / "weights"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now: the connection is refused


def cache_listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def logits(model):
    with torch.no_grad():
        return model(X)


# --- the registry ----------------------------------------------------------------------------------------

# The zoo's models that load a publisher's checkpoint (ModelSpec.checkpoint): each must have its weights listed.
MODELS_WITH_CHECKPOINTS = {s.name for s in list_models() if s.checkpoint}


def test_every_shipped_entry_is_complete_and_consistent():
    entries = registry.shipped_weights()
    assert {w.model for w in entries if w.classification} == MODELS_WITH_CHECKPOINTS
    for w in entries:
        spec = get_spec(w.model)
        assert registry.problems(w) == [], (w.model, w.version)
        assert w.publisher in registry.PUBLISHER_HOSTS and w.publisher in spec.checkpoint
        if w.publisher == "torchvision":  # torch.hub's rule: the hex after the first '-' that precedes a '.'
            assert registry.HASH_IN_FILE_NAME.search(w.file_name)[1] == w.sha256_prefix
            assert len(w.sha256_prefix) == 8 and w.sha256 is None and w.url.endswith("/" + w.file_name)
        else:
            assert len(w.sha256) == 64 and w.sha256_prefix is None
        # test_zoo proves spec.params / aux_params against the built models
        counted = spec.params + (spec.aux_params if w.num_params_counts == "with auxiliary heads" else 0)
        if w.num_params is not None:
            assert w.num_params == counted, w.model
        else:
            assert round(counted / 1e6, 2) == w.num_params_m, w.model
        assert w.source and w.license and w.license_note
    for model in MODELS_WITH_CHECKPOINTS:
        assert sum(w.default for w in registry.weights_for(model)) == 1, model


def test_each_entry_carries_its_own_evaluation_transform():
    def pre(model, version):
        return cnnx.pretrained_weights(model, version).preprocess

    for model in ("resnet50", "resnet101", "resnet152", "resnext50-32x4d", "resnext101-32x8d"):
        assert (pre(model, "v1").resize, pre(model, "v2").resize) == (256, 232)
        assert cnnx.pretrained_weights(model).version == "v2"  # torchvision's DEFAULT
    assert cnnx.pretrained_weights("resnext101-64x4d").preprocess.resize == 232
    assert cnnx.pretrained_weights("resnet18").version == "v1"
    # torchvision runs these with transform_input=True; cnnx's mean = std = 0.5 is the same map (README)
    for model in ("googlenet-tv", "inception-v3"):
        assert pre(model, True) == get_spec(model).preprocess and pre(model, True).mean == (0.5, 0.5, 0.5)
    assert (pre("inception-v3", True).resize, pre("inception-v3", True).crop) == (342, 299)
    irv2 = pre("inception-resnet-v2", True)
    assert (irv2.resize, irv2.crop, irv2.interpolation, irv2.std) == (333, 299, "bicubic", (0.5, 0.5, 0.5))


def test_problems_catch_a_malformed_entry():
    good = cnnx.pretrained_weights("resnet50", "v2")
    assert registry.problems(dataclasses.replace(good, url="https://example.com/resnet50-11ad3fa6.pth"))
    assert registry.problems(dataclasses.replace(good, sha256_prefix="11ad3fa7"))  # not the file name's
    assert registry.problems(dataclasses.replace(good, sha256_prefix=None))  # nothing to verify against
    assert registry.problems(dataclasses.replace(good, transform={**good.transform, "crop": 299}))
    with pytest.raises(UsageError, match="not usable: no published hash"):
        registry.register(dataclasses.replace(good, version="v9", sha256_prefix=None))
    assert [w.version for w in registry.weights_for("resnet50")] == ["v1", "v2"]


# --- choosing weights ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, offered", [("alexnet", "alexnet-tv"), ("googlenet", "googlenet-tv"),
                                            ("vgg11-lrn", "vgg11"), ("vgg16-c", "vgg16"),
                                            ("inception-resnet-v1", "inception-resnet-v2"), ("nin", "resnet50")])
def test_model_without_public_weights_exits_2_naming_variants_that_have_them(run_cli, home, model, offered):
    result = run_cli("export", model, "--pretrained", "--out", home.parent / "export")
    assert result.exit_code == 2
    assert f"'{model}' has no published ImageNet weights" in result.stderr and offered in result.stderr
    assert not (home.parent / "export").exists() and not home.exists()  # nothing written, nothing fetched


def test_a_version_the_publisher_does_not_have_exits_2_naming_what_exists(run_cli, home):
    result = run_cli("export", "resnet18", "--pretrained", "v2")
    assert result.exit_code == 2
    assert "no 'v2' weights for resnet18" in result.stderr and "v1 (ResNet18_Weights.IMAGENET1K_V1" in result.stderr
    result = run_cli("export", "vgg16", "--pretrained", "features")
    assert result.exit_code == 2 and "cannot classify" in result.stderr and "--pretrained v1" in result.stderr


def test_pretrained_and_weights_together_is_a_usage_error(run_cli, home, tmp_path):
    for command in (("export", "resnet18"), ("bench", "resnet18"), ("check", "resnet18")):
        result = run_cli(*command, "--pretrained", "--weights", tmp_path / "r18.pth")
        assert result.exit_code == 2, command
        assert "--pretrained and --weights" in result.stderr
    result = run_cli("export", "--pretrained", "resnet18")  # the optional value would swallow the model name
    assert result.exit_code == 2 and "not a weights version" in result.stderr


# --- the download cache on a real server -----------------------------------------------------------------

def test_export_and_check_with_pretrained_weights_through_the_cli(run_cli, home, server, seeded, loopback,
                                                                  monkeypatch, tmp_path):
    path, digest, expected = seeded
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", f"{server.url}/mirror")
    out = tmp_path / "export"
    result = run_cli("export", "resnet18", "--pretrained", "loopback", "--out", out, "--no-simplify", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(server.requested(path.name)) == 1 and server.requested(path.name)[0].startswith("/mirror/")
    assert cache_listing(home) == sorted([path.name, path.name + ".sha256"])  # no partial file left
    manifest = json.loads(result.stdout)["artifacts"][0]["manifest"]
    assert manifest["weights"] == {"source": "pretrained", "publisher": "cnnx tests", "name": "resnet18 seed 5",
                                   "version": "loopback", "url": loopback.url, "file_name": path.name,
                                   "published_sha256": digest[:8], "sha256": digest}
    assert manifest["preprocess"]["resize"] == 232  # the transform of the weights loaded, not resnet18's 256
    assert manifest["parity"]["passed"]

    # check rebuilds the eager model from the manifest: the cached file, verified, no request; parity passes
    # only if it loaded the very weights the artifact was exported with
    artifact = out / "resnet18-fp32.onnx"
    result = run_cli("check", artifact, "--json")
    assert result.exit_code == 0, result.stderr
    assert len(server.requested(path.name)) == 1
    assert cnnx.load(artifact).preprocess.resize == 232  # predict and the runtime API use the weights' transform

    # the cache is checked before use: a damaged cached file is deleted and fetched again
    (home / path.name).write_bytes(path.read_bytes()[:1000])
    assert torch.equal(logits(cnnx.create_model("resnet18", pretrained="loopback")), expected)
    assert len(server.requested(path.name)) == 2 and (home / path.name).read_bytes() == path.read_bytes()


def test_create_model_downloads_once_then_uses_the_cache(home, server, seeded, loopback):
    path, digest, expected = seeded
    before = len(server.requested(path.name))
    model = cnnx.create_model("resnet18", pretrained="loopback")  # from the entry's own URL (no mirror)
    assert torch.equal(logits(model), expected) and not model.training
    assert server.requested(path.name)[before:] == [f"/published/{path.name}"]
    assert json.loads((home / f"{path.name}.sha256").read_text())["sha256"] == digest
    again = cnnx.create_model("resnet18", pretrained="loopback")
    assert torch.equal(logits(again), expected)
    assert len(server.requested(path.name)) == before + 1  # a cache hit makes no request


def test_wrong_hash_from_the_server_is_refused_and_deleted(run_cli, home, server, monkeypatch):
    real = cnnx.pretrained_weights("resnet18")  # resnet18-f37072fd.pth: these bytes cannot match its prefix
    server.routes[f"/wrong/{real.file_name}"] = b"not the published weights" * 1000
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", f"{server.url}/wrong/")
    result = run_cli("export", "resnet18", "--pretrained", "--out", home.parent / "export")
    assert result.exit_code == 3
    assert "is not the published one" in result.stderr and 'expected "f37072fd"' in result.stderr
    assert str(home / real.file_name) in result.stderr.replace("\n", "")
    assert cache_listing(home) == [] and cache_listing(home.parent / "export") == []


def test_a_download_cut_off_midway_is_never_used(home, server, seeded, loopback, monkeypatch):
    path, _, _ = seeded
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", f"{server.url}/cut")
    with pytest.raises(DownloadFailed) as err:
        cnnx.create_model("resnet18", pretrained="loopback")
    assert f"{server.url}/cut/{path.name}" in err.value.message
    assert str(home / path.name) in err.value.hint
    assert cache_listing(home) == []  # neither the file nor a partial one


def test_http_404_exits_3_naming_url_and_the_hand_copy_path(run_cli, home, server, loopback, monkeypatch):
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", f"{server.url}/nowhere")
    result = run_cli("export", "resnet18", "--pretrained", "loopback")
    text = result.stderr.replace("\n", "")
    assert result.exit_code == 3
    assert f"{server.url}/nowhere/{loopback.file_name}" in text and "HTTP 404" in text
    assert str(home / loopback.file_name) in text
    assert cache_listing(home) == []


def test_unreachable_host_exits_3_and_a_hand_copied_file_is_picked_up(run_cli, home, seeded, loopback,
                                                                      monkeypatch):
    path, _, expected = seeded
    mirror = closed_port_url()
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", mirror)
    result = run_cli("bench", "resnet18", "--pretrained", "loopback", "--backends", "torch", "--precision", "fp32",
                     "--batch", "1", "--duration", "0.05", "--min-iters", "1", "--json")
    text = result.stderr.replace("\n", "")
    assert result.exit_code == 3 and f"{mirror}/{path.name}" in text
    hand_copy = home / path.name
    assert f"copy {path.name} by hand to {hand_copy}" in text
    # offline, the file copied to that path is verified and used
    hand_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, hand_copy)
    result = run_cli("bench", "resnet18", "--pretrained", "loopback", "--backends", "torch", "--precision", "fp32",
                     "--batch", "1", "--duration", "0.05", "--min-iters", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["cases"][0]["status"] == "ok"
    # a wrong hand-copied file is never used: it is deleted, and (offline) the fetch fails
    hand_copy.write_bytes(b"x" * 100)
    with pytest.raises(DownloadFailed):
        cnnx.create_model("resnet18", pretrained="loopback")
    assert cache_listing(home) == []


def test_mirror_folder(home, server, seeded, loopback, monkeypatch, tmp_path):
    path, _, expected = seeded
    folder = tmp_path / "site-mirror"
    folder.mkdir()
    shutil.copy(path, folder / path.name)
    monkeypatch.setenv("CNNX_WEIGHTS_MIRROR", str(folder))
    before = len(server.requests)
    assert torch.equal(logits(cnnx.create_model("resnet18", pretrained="loopback")), expected)
    assert len(server.requests) == before and (home / path.name).is_file()
    assert cache_dir() == home


def test_cache_location_follows_cnnx_home_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNX_HOME", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a" / "weights"
    monkeypatch.delenv("CNNX_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "cnnx" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "cnnx" / "weights"


# --- what list and info show -----------------------------------------------------------------------------

def test_list_and_info_show_published_weights(run_cli):
    listed = {m["name"]: m["pretrained"] for m in json.loads(run_cli("list", "--json").stdout)}
    assert listed["alexnet"] is None and listed["resnet50"]["default"] == "v2"
    assert listed["resnet50"]["top1"] == 80.858 and listed["inception-resnet-v2"]["top1"] == 80.434
    assert {m for m, w in listed.items() if w} == MODELS_WITH_CHECKPOINTS
    table = run_cli("list").stdout
    assert "80.86% (v2)" in table
    info = json.loads(run_cli("info", "resnet50", "--json").stdout)
    assert [(w["version"], w["preprocess"]["resize"], w["top1"]) for w in info["pretrained"]] == [
        ("v1", 256, 76.13), ("v2", 232, 80.858)]
    assert all(w["license"] == "not stated" and "Pre-trained Model License" in w["license_note"]
               for w in info["pretrained"])
    text = run_cli("info", "googlenet-tv").stdout
    assert "top-1 69.778%, top-5 89.53%" in text and "googlenet-1378be20.pth, sha256 prefix 1378be20" in text
    assert "transform_input=True" in text and "license: not stated" in text
    irv2 = cnnx.pretrained_weights("inception-resnet-v2").to_dict()
    assert irv2["license"] == "Apache-2.0" and irv2["published_hash"] == irv2["sha256"]

