"""Load on the real Triton server: N concurrent tritonclient clients for a fixed time against a python-kind
model written by `cnnx triton --python`, once per input kind, side by side in one run:

  tensor  clients send the preprocessed float32 image (1 x 3 x 224 x 224, 588 KiB; preprocessed once, up front)
  bytes   clients send the JPEG file itself (image_bytes); the server decodes and preprocesses it

Each client sends one image per request and waits for the answer; the server's dynamic batcher joins the
requests of concurrent clients. Reports requests/s, p50/p99 latency (trtexec's percentile rule, as `cnnx bench`)
and the mean batch the server ran (its statistics), with the machine named. NVIDIA's perf_analyzer needs the
SDK container; this is the measurement that runs anywhere the server test runs.

    python scripts/triton_load.py [--model resnet50] [--clients 1,4,8] [--seconds 10] [--protocol grpc]
                                  [--server-venv .venv-tritonserver] [--max-batch 8] [--queue-delay-us 100]

The server venv comes from `.ci/triton-server-env.sh` (or --server-venv / $CNNX_TRITON_SERVER_VENV). Client and
server share this machine's cores: on a small machine the clients' own CPU time is part of what is measured.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import cnnx
from cnnx.bench.timing import summarize
from cnnx.data import sample_images
from cnnx.deploy import triton
from cnnx.deploy.tritonserver import VENV_VARIABLE, LocalTritonServer
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.hardware import describe, machine_info

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "classifier"


def client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def request_inputs(module, kind: str, photo: Path, predictor) -> list:
    if kind == "bytes":
        tensor = module.InferInput("image_bytes", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo.read_bytes()], dtype=np.object_).reshape(1, 1))
    else:
        batch = predictor.prepare(photo)[None]
        tensor = module.InferInput(predictor.input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
    return [tensor]


def server_counts(server: LocalTritonServer) -> tuple[int, int]:
    import tritonclient.http as httpclient

    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics(MODEL_NAME)
    model = stats["model_stats"][0]
    return model["inference_count"], model["execution_count"]


def run_load(server, protocol: str, kind: str, clients: int, seconds: float, predictor) -> dict:
    """`clients` threads, each with its own client, send requests back to back: 1 s of warm-up, then
    `seconds` timed. Returns the latency statistics and the server's mean batch over the timed part."""
    module = client_module(protocol)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    photos = sample_images()
    start = threading.Barrier(clients + 1)
    phase = {"timed": False, "stop": False}
    latencies: list[float] = []
    errors: list[Exception] = []

    def worker(index: int) -> None:
        client = module.InferenceServerClient(url)
        inputs = request_inputs(module, kind, photos[index % len(photos)], predictor)
        start.wait()
        while not phase["stop"]:
            t0 = time.perf_counter()
            try:
                client.infer(MODEL_NAME, inputs)
            except Exception as exc:  # noqa: BLE001 - reported after the run
                errors.append(exc)
                return
            if phase["timed"]:
                latencies.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(1.0)  # warm-up: thread pools, connections, the batcher's rhythm
    inferences0, executions0 = server_counts(server)
    phase["timed"], t0 = True, time.perf_counter()
    time.sleep(seconds)
    phase["stop"], wall = True, time.perf_counter() - t0
    for thread in threads:
        thread.join()
    inferences, executions = server_counts(server)
    if errors:
        raise RuntimeError(f"{len(errors)} request(s) failed, e.g. {errors[0]}")
    # requests still in flight at the stop are counted by the server but not timed: a small bias, same for all
    return {"stats": summarize(latencies, batch=1, wall_s=wall),
            "mean_batch": (inferences - inferences0) / max(executions - executions0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--clients", default="1,4,8", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per case")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--server-venv", type=Path,
                        default=Path(os.environ.get(VENV_VARIABLE) or ROOT / ".venv-tritonserver"))
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-delay-us", type=int, default=triton.DEFAULT_QUEUE_DELAY_US)
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]

    with tempfile.TemporaryDirectory(prefix="cnnx-triton-load-") as tmp:
        tmp = Path(tmp)
        artifact = export_model(ExportOptions(args.model, precisions=("fp32",), out_dir=tmp, check=False))[0].path
        opts = triton.TritonOptions(python=True, max_batch=args.max_batch, queue_delay_us=args.queue_delay_us)
        triton.add_to_repository([artifact], tmp / "repo", name=MODEL_NAME, opts=opts)
        predictor = cnnx.load(artifact)  # the client side's preprocessing for tensor requests
        rows = []
        with LocalTritonServer(tmp / "repo", args.server_venv, tmp / "server") as server:
            state = server.model_states()[MODEL_NAME]
            if state[0] != "READY":
                raise SystemExit(f"the model did not load: {state[1]}")
            for kind in ("tensor", "bytes"):
                for n in clients:
                    result = run_load(server, args.protocol, kind, n, args.seconds, predictor)
                    stats = result["stats"]
                    rows.append((kind, n, stats.qps, stats.median_ms, stats.p99_ms, result["mean_batch"],
                                 stats.iterations))
                    print(f"{kind:6s} clients {n:2d}: {stats.qps:7.1f} req/s  p50 {stats.median_ms:7.1f} ms  "
                          f"p99 {stats.p99_ms:7.1f} ms  mean batch {result['mean_batch']:.2f}", flush=True)

    print(f"\nmachine: {describe(machine_info())}")
    print(f"{args.model} fp32, python kind on ONNX Runtime, tritonserver 2.51.0 (nvidia-pytriton 0.7.0), "
          f"{args.protocol}, max batch {args.max_batch}, queue delay {args.queue_delay_us} us, "
          f"{args.seconds:g} s per case, one image per request\n")
    print("| input | clients | requests/s | p50 ms | p99 ms | mean server batch | requests timed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, n, qps, p50, p99, batch, count in rows:
        print(f"| {kind} | {n} | {qps:.1f} | {p50:.1f} | {p99:.1f} | {batch:.2f} | {count} |")


if __name__ == "__main__":
    main()
