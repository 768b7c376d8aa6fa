"""The real Triton server on repositories written by `cnnx triton`: tritonserver 2.51.0 from the nvidia-pytriton
wheel, CPU only, on free loopback ports, driven by tritonclient over HTTP and gRPC.

The python kind serves (tensors and real photos as image bytes, compared with cnnx.load and `cnnx predict`,
concurrent clients batched, a corrupt image failing alone); the onnxruntime_onnx, openvino and tensorrt_plan
configs get as far as Triton's missing backend libraries (the wheel has the python backend only), which Triton
looks up only after parsing and validating the config and its inputs and outputs; a model that cannot load is
seen failing; the server shuts down cleanly on SIGTERM to its own PID.

The server runs from its own venv (numpy < 2): `.ci/triton-server-env.sh` builds it, and `.ci/run` points this
test at it. Without one the test skips with that reason, except where CNNX_REQUIRE_TRITON_SERVER=1 (CI), where
a missing server is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from cnnx.data import sample_images
from cnnx.deploy import triton
from cnnx.deploy.tritonserver import SETUP_COMMAND, VENV_VARIABLE, LocalTritonServer, ServerEnvironment
from plans import plan_manifest, write_fake_plan

# slow: one server start loading three python models, plus references in the server's venv: about 20 s of
# its own on 2 cores (more when the cores are shared), after the NiN export it shares with test_triton.py
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
REQUIRE_VARIABLE = "CNNX_REQUIRE_TRITON_SERVER"
MAX_BATCH = 16
QUEUE_DELAY_US = 200_000
PHOTOS = sample_images() + [Path(skimage.data.__file__).parent / "astronaut.png"]  # JPEGs and a PNG
CORRUPT = PHOTOS[0].read_bytes()[:2000]  # a JPEG cut short
MISSING_BACKEND = "Invalid argument: unable to find backend library for backend '{}', try specifying runtime " \
                  "on the model configuration."


@pytest.fixture(scope="module")
def environment() -> ServerEnvironment:
    venv = Path(os.environ.get(VENV_VARIABLE) or ROOT / ".venv-tritonserver")
    try:
        environment = ServerEnvironment(venv)
        problem = environment.problem()
    except (OSError, RuntimeError) as exc:  # no venv there, or a broken one
        problem = f"no usable Triton server venv at {venv} ({exc}): build it with `{SETUP_COMMAND} {venv}`"
    if problem:
        if os.environ.get(REQUIRE_VARIABLE) == "1":
            pytest.fail(f"{REQUIRE_VARIABLE}=1 but the real Triton server cannot run: {problem}")
        pytest.skip(problem)
    return environment


@pytest.fixture(scope="module")
def repo(nin_onnx, tmp_path_factory) -> Path:
    """Every kind of model `cnnx triton` writes, plus two that must not load."""
    repo = tmp_path_factory.mktemp("triton-server") / "repo"
    add = triton.add_to_repository
    # a queue delay long enough for requests sent together to meet in one batch, even on a busy machine
    python = triton.TritonOptions(python=True, max_batch=MAX_BATCH, queue_delay_us=QUEUE_DELAY_US)
    add([nin_onnx], repo, name="nin-python", opts=python)
    add([nin_onnx], repo, name="nin-python-openvino", opts=replace(python, backend="openvino"))
    add([nin_onnx], repo, name="nin-onnxruntime")
    add([nin_onnx], repo, name="nin-openvino", opts=triton.TritonOptions(backend="openvino"))
    add([nin_onnx], repo, name="nin-openvino-batched", opts=triton.TritonOptions(backend="openvino", max_batch=4))
    manifest = plan_manifest(max_batch=8)
    manifest = replace(manifest, profile={**manifest.profile, "min": [2, 3, 224, 224], "min_batch": 2})
    add([write_fake_plan(repo.parent, manifest)], repo, name="nin-tensorrt")  # warm-up batches 2 and 8
    # must not load: an artifact changed after `cnnx triton` wrote it (cnnx.load refuses it in initialize) ...
    add([nin_onnx], repo, name="nin-tampered", opts=python)
    with open(repo / "nin-tampered" / "1" / "model.onnx", "ab") as f:
        f.write(b"\0")
    # ... and a config Triton itself rejects before it looks for a backend
    shutil.copytree(repo / "nin-onnxruntime", repo / "nin-invalid")
    config = repo / "nin-invalid" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "nin-onnxruntime"', 'name: "nin-invalid"')
                      .replace("dynamic_batching {", "dynamic_batching {\n  preferred_batch_size: [ 64 ]"))
    return repo


@pytest.fixture(scope="module")
def server(environment, repo, tmp_path_factory):
    server = LocalTritonServer(repo, environment, tmp_path_factory.mktemp("triton-server-work"))
    with server:
        yield server


@pytest.fixture(scope="module")
def reference(environment, repo, tmp_path_factory) -> dict[str, np.ndarray]:
    """cnnx.load on the served artifact in the server's own environment (the same ONNX Runtime and OpenVINO
    builds as model.py): all photos, decoded from their bytes, as one preprocessed batch ("batch") and its
    logits on each runtime ("onnxruntime", "openvino")."""
    out = tmp_path_factory.mktemp("reference") / "reference.npz"
    script = ("import sys, numpy as np, cnnx\n"
              "artifact, out, photos = sys.argv[1], sys.argv[2], sys.argv[3:]\n"
              "result = {}\n"
              "for runtime in ('onnxruntime', 'openvino'):\n"
              "    p = cnnx.load(artifact, runtime)\n"
              "    batch = np.stack([p.prepare(open(f, 'rb').read()) for f in photos])\n"
              "    result[runtime] = p(batch)\n"
              "result['batch'] = batch\n"
              "np.savez(out, **result)\n")
    subprocess.run([str(environment.venv / "bin" / "python"), "-c", script,
                    str(repo / "nin-python" / "1" / "model.onnx"), str(out), *map(str, PHOTOS)],
                   check=True, timeout=300)
    return dict(np.load(out))


def bytes_input(module, blobs: list[bytes]):
    tensor = module.InferInput("image_bytes", [len(blobs), 1], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=np.object_).reshape(-1, 1))
    return tensor


def tensor_input(module, batch: np.ndarray):
    tensor = module.InferInput("images", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return tensor


def labels(result) -> list[list[str]]:
    return [[label.decode() for label in row] for row in result.as_numpy("labels")]


def statistics(server, model: str) -> dict:
    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics(model)["model_stats"][0]
    return {"executions": stats["execution_count"], "inferences": stats["inference_count"],
            "batches": {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}}


def statistics_once_counted(server, model: str, before: dict, requests: int) -> dict:
    """The statistics once the server has counted `requests` more inferences: Triton records them after it has
    sent the responses, so a client that holds every answer may still read the old numbers (seen in CI)."""
    deadline = time.monotonic() + 10
    while True:
        after = statistics(server, model)
        if after["inferences"] - before["inferences"] >= requests or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def test_every_model_loads_or_fails_as_expected(server, repo):
    states = server.model_states()
    # a model folder Triton cannot read at all (no version folder) would be missing from the index
    assert set(states) == {p.name for p in repo.iterdir()}
    assert states["nin-python"] == states["nin-python-openvino"] == ("READY", "")
    # the config parsed and validated, inputs and outputs included (auto-complete is off), and the layout was
    # accepted: Triton stops only at the backend library that the wheel lacks
    for name, backend in (("nin-onnxruntime", "onnxruntime"), ("nin-openvino", "openvino"),
                          ("nin-openvino-batched", "openvino"), ("nin-tensorrt", "tensorrt")):
        assert states[name] == ("UNAVAILABLE", MISSING_BACKEND.format(backend)), name
    # an invalid config fails earlier, when Triton reads the repository: the assertion above can fail
    assert states["nin-invalid"] == ("", "")  # listed, never loaded
    assert "Poll failed for model directory 'nin-invalid': dynamic batching preferred size must be <= max batch " \
           "size for nin-invalid" in server.log_text()
    state, reason = states["nin-tampered"]
    assert state == "UNAVAILABLE" and "does not match its manifest" in reason, reason
    assert re.search(r"failed to load 'nin-tampered' version 1: .*does not match its manifest", server.log_text())
    ready = httpclient.InferenceServerClient(server.http_url)
    assert ready.is_model_ready("nin-python") and not ready.is_model_ready("nin-tampered")


def test_tensors_over_http_and_grpc_equal_cnnx_load(server, reference):
    batch = reference["batch"][:4]
    expected = reference["onnxruntime"][:4]
    http = httpclient.InferenceServerClient(server.http_url).infer("nin-python", [tensor_input(httpclient, batch)])
    grpc = grpcclient.InferenceServerClient(server.grpc_url).infer("nin-python", [tensor_input(grpcclient, batch)])
    for result in (http, grpc):
        np.testing.assert_array_equal(result.as_numpy("logits"), expected)  # bit for bit: same runtime
    assert labels(http) == labels(grpc)
    both = [tensor_input(grpcclient, batch[:1]), bytes_input(grpcclient, [PHOTOS[0].read_bytes()])]
    with pytest.raises(InferenceServerException, match="send either 'images' .* or 'image_bytes'") as error:
        grpcclient.InferenceServerClient(server.grpc_url).infer("nin-python", both)
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_real_photos_as_image_bytes_same_top1_as_cnnx_predict(server, reference, nin_onnx, run_cli):
    blobs = [p.read_bytes() for p in PHOTOS]
    grpc = grpcclient.InferenceServerClient(server.grpc_url).infer("nin-python", [bytes_input(grpcclient, blobs)])
    http = httpclient.InferenceServerClient(server.http_url).infer("nin-python", [bytes_input(httpclient, blobs)])
    for result in (grpc, http):
        np.testing.assert_array_equal(result.as_numpy("logits"), reference["onnxruntime"])
        assert result.as_numpy("probabilities").shape == (len(PHOTOS), 5)
    predicted = json.loads(run_cli("predict", nin_onnx, *PHOTOS, "--json").stdout)["results"]
    assert [row[0] for row in labels(grpc)] == [r["predictions"][0]["label"] for r in predicted]
    assert labels(grpc) == labels(http) == [[p["label"] for p in r["predictions"]] for r in predicted]
    np.testing.assert_allclose(grpc.as_numpy("probabilities"),
                               [[p["probability"] for p in r["predictions"]] for r in predicted], rtol=1e-5)

    openvino = grpcclient.InferenceServerClient(server.grpc_url).infer("nin-python-openvino",
                                                                      [bytes_input(grpcclient, blobs)])
    np.testing.assert_array_equal(openvino.as_numpy("logits"), reference["openvino"])


def test_a_corrupt_image_fails_its_request_only_within_a_batch(server, reference):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    good = [p.read_bytes() for p in PHOTOS[:3]]
    before = statistics(server, "nin-python")
    results: dict[int, object] = {}
    done = threading.Semaphore(0)

    def keep(i):
        return lambda result, error: (results.__setitem__(i, error or result), done.release())

    for i, blob in enumerate(good[:2] + [CORRUPT] + good[2:]):  # sent together: one batch
        client.async_infer("nin-python", [bytes_input(grpcclient, [blob])], keep(i))
    for _ in range(4):
        assert done.acquire(timeout=60)
    after = statistics_once_counted(server, "nin-python", before, requests=3)
    assert after["executions"] - before["executions"] == 1
    assert after["batches"].get(4, 0) - before["batches"].get(4, 0) == 1
    error = results.pop(2)
    assert isinstance(error, InferenceServerException) and error.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.message().startswith("image_bytes[0]: these 2000 bytes are not a readable image (OSError: "
                                      "image file is truncated"), error.message()
    for i, photo in zip((0, 1, 3), (0, 1, 2)):
        np.testing.assert_array_equal(results[i].as_numpy("logits"), reference["onnxruntime"][photo:photo + 1])


def test_concurrent_clients_are_batched_and_answered_correctly(server, reference):
    blobs = [p.read_bytes() for p in PHOTOS]
    before = statistics(server, "nin-python")
    answers, failures = [], []

    def client_thread(worker: int):
        try:  # each thread its own client; HTTP and gRPC, tensors and image bytes, mixed
            module = httpclient if worker % 2 else grpcclient
            url = server.http_url if worker % 2 else server.grpc_url
            client = module.InferenceServerClient(url)
            for step in range(4):
                photo = (worker + step) % len(PHOTOS)
                data = tensor_input(module, reference["batch"][photo:photo + 1]) if step % 2 else \
                    bytes_input(module, [blobs[photo]])
                answers.append((photo, client.infer("nin-python", [data]).as_numpy("logits")))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=client_thread, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures and len(answers) == 32
    for photo, logits in answers:
        np.testing.assert_array_equal(logits, reference["onnxruntime"][photo:photo + 1])
    after = statistics(server, "nin-python")
    assert after["inferences"] - before["inferences"] == 32
    # dynamic batching formed batches of several requests: fewer executions than requests
    assert after["executions"] - before["executions"] < 32
    assert any(size > 1 and after["batches"][size] > before["batches"].get(size, 0) for size in after["batches"])


def test_clean_shutdown_by_the_servers_own_pid(server):
    pid = server.process.pid
    assert server.stop() == 0
    assert not Path(f"/proc/{pid}").exists()
    assert server.leftover_shared_memory() == []
    log = server.log_text()
    assert "successfully unloaded 'nin-python' version 1" in log
    assert "successfully unloaded 'nin-python-openvino' version 1" in log
