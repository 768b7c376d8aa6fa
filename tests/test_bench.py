"""Benchmark statistics against hand-computed values, report schemas, backend errors, a smoke bench."""

import csv
import json

import numpy as np
import pytest

from cnnx.backends import BACKENDS
from cnnx.bench import timing as bench


def test_percentiles_follow_trtexec_float32_rule():
    values = [float(v) for v in range(1, 101)]  # 1..100
    # excluded = int((1 - p/100) * N) in float32: p90 -> int(10.0000024) = 10 -> sorted[89] = 90
    assert bench.trtexec_percentile(values, 90) == 90.0
    assert bench.trtexec_percentile(values, 95) == 95.0
    # p99: 1 - 0.99f = 0.00999999 -> int(0.999999) = 0 excluded -> the max, as trtexec reports it
    assert bench.trtexec_percentile(values, 99) == 100.0
    ten = [float(v) for v in range(1, 11)]
    assert bench.trtexec_percentile(ten, 90) == 9.0  # excluded int(1.0000002) = 1 -> sorted[8]
    assert bench.trtexec_percentile(ten, 99) == 10.0  # excluded int(0.1) = 0 -> the max
    assert bench.trtexec_percentile([5.0], 99) == 5.0


def test_median_mean_cov_and_throughput():
    stats = bench.summarize([4.0, 1.0, 3.0, 2.0], batch=8, wall_s=0.5)
    assert stats.median_ms == 2.5 and stats.mean_ms == 2.5  # even count: mean of the middle two
    assert stats.min_ms == 1.0 and stats.max_ms == 4.0
    # population std of 1..4 = sqrt(1.25); CoV = 1.118.../2.5*100
    assert stats.cov_pct == pytest.approx(44.72136, rel=1e-5)
    assert stats.unstable
    assert stats.qps == 8.0 and stats.images_per_s == 64.0  # 4 queries in 0.5 s, 8 images each
    odd = bench.summarize([3.0, 1.0, 2.0], batch=1, wall_s=1.0)
    assert odd.median_ms == 2.0 and not bench.summarize([2.0, 2.0], 1, 1.0).unstable


def test_time_loop_runs_until_both_iterations_and_duration():
    calls = []
    stats = bench.time_loop(lambda: calls.append(1) or 1.5, batch=1, warmup_ms=0, duration_s=0.0, min_iters=7)
    assert stats.iterations == 7 and stats.median_ms == 1.5  # a step's own latency (CUDA events) is used
    assert len(calls) == 8  # one warm-up call, then the timed ones


def test_unknown_backend_exits_2(run_cli):
    result = run_cli("bench", "nin", "--backends", "torch,tensorflow")
    assert result.exit_code == 2 and "unknown backend tensorflow" in result.stderr


def test_unavailable_backend_asked_for_exits_3_with_reason(run_cli):
    reason = BACKENDS["tensorrt"].unavailable_reason()
    assert reason  # no TensorRT here; on a TensorRT machine this test is moot
    result = run_cli("bench", "nin", "--backends", "tensorrt")
    assert result.exit_code == 3
    assert "backend 'tensorrt' is unavailable" in result.stderr and "Traceback" not in result.output


def test_smoke_bench_json_csv_and_plot(run_cli, tmp_path):
    csv_path, plot_path = tmp_path / "b.csv", tmp_path / "b.png"
    result = run_cli("bench", "nin", "--backends", "torch,onnxruntime", "--precision", "fp32,int8",
                     "--batch", "1,2", "--duration", "0.05", "--min-iters", "3", "--warmup-ms", "0",
                     "--threads", "1", "--out", tmp_path / "export", "--json", "--csv", csv_path,
                     "--plot", plot_path)
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.output)
    assert report["machine"]["cpu"]["model"] and report["machine"]["versions"]["onnxruntime"]
    ok = {(c["backend"], c["precision"], c["batch"]): c for c in report["cases"] if c["status"] == "ok"}
    assert {(backend, "fp32", batch) for backend in ("torch", "onnxruntime") for batch in (1, 2)} <= set(ok)
    assert ok[("torch", "fp32", 1)]["speedup"] == 1.0
    for case in ok.values():
        stats = case["latency"]
        assert stats["iterations"] >= 3 and stats["min_ms"] <= stats["median_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    skipped = {(c["backend"], c["precision"]) for c in report["cases"] if c["status"] == "skipped"}
    assert ("torch", "int8") in skipped  # listed with a reason, not dropped
    assert all(c["reason"] for c in report["cases"] if c["status"] == "skipped")
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == len(report["cases"]) and {"median_ms", "p99_ms", "images_per_s", "speedup"} <= set(rows[0])
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torch_cases_leave_the_shared_eager_model_in_fp32(tmp_path):
    """bench builds the eager model once and every torch case wraps it: an fp16 case (on a GPU) must not round
    its weights in place, or the fp32 cases after it would measure, and compare against, an fp16 model."""
    import torch

    from cnnx.backends.torch import TorchRunner
    from cnnx.bench.suite import Workload

    workload = Workload("nin", tmp_path, threads=None, device="cpu", progress=lambda stage: None)
    before = {k: v.clone() for k, v in workload.eager.state_dict().items()}
    x = workload.inputs(2)
    with torch.inference_mode():
        reference = workload.eager(torch.from_numpy(x)).numpy()
    workload.steps("torch", "fp16", 2)  # what a GPU fp16 case builds (the step itself is not run on this CPU)
    after = workload.eager.state_dict()
    assert all(after[k].dtype == before[k].dtype and torch.equal(after[k], before[k]) for k in before)
    np.testing.assert_array_equal(TorchRunner(workload.eager)(x), reference)


@pytest.mark.gpu
def test_gpu_torch_runners_agree_with_the_cpu_and_keep_the_model_fp32():
    """On a GPU: eager fp32, CUDA-graph fp32 and eager fp16 runners built from one model give the CPU's logits
    (fp16 within its precision), and the model they share is still the fp32 one afterwards."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (none is visible to PyTorch)")
    from cnnx.backends.torch import TorchCudaGraphRunner, TorchRunner
    from cnnx.data import load_batch, sample_images
    from cnnx.models.registry import get_spec
    from cnnx.weights import create_model

    model = create_model("resnet18")
    x = load_batch(sample_images()[:4], get_spec("resnet18").preprocess)
    reference = TorchRunner(model)(x)
    fp16 = TorchRunner(model, device="cuda", precision="fp16")(x)
    graph = TorchCudaGraphRunner(model, device="cuda")
    step, _ = graph.timed_steps(x)
    step()
    np.testing.assert_allclose(TorchRunner(model, device="cuda")(x), reference, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(graph(x), reference, rtol=1e-3, atol=1e-3)
    assert np.corrcoef(fp16.ravel(), reference.ravel())[0, 1] > 0.999
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    np.testing.assert_array_equal(TorchRunner(model)(x), reference)


def _scripted_step(latencies_ms, calls=None):
    """A step that reports the given latencies (ms) in order, as a GPU step reports its CUDA-event time."""
    values = iter(latencies_ms)

    def step():
        if calls is not None:
            calls.append(1)
        return next(values)
    return step


def test_rounds_report_the_median_of_round_medians_and_stats_over_every_call():
    # one warm-up call, then 3 rounds of 2 calls (min_iters 6 split over 3 rounds); no settle calls: every
    # round's median is above ROUND_SETTLE_MS
    step = _scripted_step([999.0, 100.0, 300.0, 1000.0, 2000.0, 200.0, 400.0])
    stats = bench.time_loop(step, batch=1, warmup_ms=0, duration_s=0.0, min_iters=6, rounds=3)
    assert stats.round_medians_ms == (200.0, 1500.0, 300.0)
    assert stats.median_of_rounds_ms == 300.0  # median of 200, 1500, 300
    assert stats.iterations == 6 and stats.median_ms == 350.0  # all calls: 100 200 300 400 1000 2000
    assert stats.min_ms == 100.0 and stats.max_ms == 2000.0 and stats.p99_ms == 2000.0
    report = stats.to_dict()
    assert report["rounds"] == 3 and report["median_of_rounds_ms"] == 300.0 and len(report["round_images_per_s"]) == 3


def test_later_rounds_of_short_calls_start_with_untimed_settle_calls():
    calls = []
    stats = bench.time_loop(lambda: calls.append(1) or 1.0, batch=1, warmup_ms=0, duration_s=0.0, min_iters=2,
                            rounds=2)
    assert stats.iterations == 2  # settle calls are not timed
    assert len(calls) > 1 + 2 + 1  # warm-up, 2 timed calls, and ROUND_SETTLE_MS of calls before round 2


def test_cases_are_interleaved_with_a_rotating_start_and_a_failing_case_drops_out():
    from cnnx.bench.suite import BenchCase, run_rounds

    order = []

    def step(name, fail_on_call=None):
        count = [0]

        def run():
            count[0] += 1
            if count[0] == fail_on_call:
                raise RuntimeError("device lost")
            order.append(name)
            return 100.0
        return run

    cases = {name: BenchCase("onnxruntime", name, 1, "ok") for name in "ABC"}
    # rounds=3, min_iters=3: one timed call per round after one warm-up call in the first round;
    # C fails on its 3rd call (round 2)
    timed = [(cases[n], bench.RoundTimer(bench.serial_block(step(n, 3 if n == "C" else None)), 1, warmup_ms=0,
                                         duration_s=0.0, min_iters=3, rounds=3), None) for n in "ABC"]
    run_rounds(timed, 3, progress=lambda _: None)
    assert order == ["A", "A", "B", "B", "C", "C",  # round 1 (warm-up + timed call each): A B C
                     "B", "A",                      # round 2 starts at B: B, C (fails), A
                     "A", "B"]                      # round 3 starts at the third active case, wrapping: A B
    assert cases["C"].status == "failed" and "device lost" in cases["C"].reason and cases["C"].latency is None
    assert cases["A"].latency["iterations"] == 3 and cases["A"].latency["rounds"] == 3


def test_bench_throughput_mode_reports_callers_and_images_per_s(run_cli, nin_onnx, tmp_path):
    import openvino as ov

    csv_path = tmp_path / "t.csv"
    result = run_cli("bench", nin_onnx, "--backends", "torch,onnxruntime,openvino", "--precision", "fp32",
                     "--batch", "2", "--mode", "latency,throughput", "--threads", "2", "--rounds", "2",
                     "--duration", "0.05", "--min-iters", "4", "--warmup-ms", "0", "--json", "--csv", csv_path)
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.output)
    assert report["settings"]["rounds"] == 2 and report["settings"]["schedule"] == "interleaved"
    cases = {(c["backend"], c["mode"]): c for c in report["cases"]}
    assert {c["status"] for c in cases.values()} == {"ok"} and len(cases) == 6
    compiled = ov.Core().compile_model(str(nin_onnx), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                              "INFERENCE_NUM_THREADS": 2})
    assert cases[("openvino", "throughput")]["callers"] == compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    assert cases[("onnxruntime", "throughput")]["callers"] == 2  # one caller per thread
    assert cases[("torch", "throughput")]["callers"] == 1 and cases[("onnxruntime", "latency")]["callers"] == 1
    for case in cases.values():
        stats = case["latency"]
        assert stats["rounds"] == 2 and len(stats["round_images_per_s"]) == 2 and stats["iterations"] >= 4
        assert stats["images_per_s_of_rounds"] > 0 and case["speedup"] > 0
    assert cases[("torch", "throughput")]["speedup"] == 1.0  # against eager fp32 in the same mode
    rows = list(csv.DictReader(csv_path.open()))
    assert {(r["backend"], r["mode"], r["callers"]) for r in rows} >= {("openvino", "throughput", str(
        cases[("openvino", "throughput")]["callers"]))}
    assert all(float(r["median_of_rounds_ms"]) > 0 and r["rounds"] == "2" for r in rows)


def test_unknown_mode_exits_2(run_cli):
    result = run_cli("bench", "nin", "--mode", "fastest")
    assert result.exit_code == 2 and "unknown mode fastest" in result.stderr


def test_peak_compute_follows_the_cpu_flags_cores_and_clock():
    from cnnx.hardware import achieved_tops, peak_compute

    cpu = {"isa": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"], "physical_cores": 2,
           "mhz": 2100.0, "max_mhz": None}
    amx = peak_compute("int8", cpu)
    # AMX: 2,048 int8 operations per cycle per core = 1,024 MACs; 2 cores x 2.1 GHz -> 8.6016 TOPS
    assert (amx.unit, amx.macs_per_cycle, amx.cores) == ("AMX-INT8", 1024, 2) and amx.tops == pytest.approx(8.6016)
    assert peak_compute("int8", cpu, threads=1).tops == pytest.approx(4.3008)  # the cores the threads can use
    assert peak_compute("int8", cpu, threads=8).cores == 2
    assert peak_compute("bf16", cpu).tops == pytest.approx(2 * 512 * 2 * 2.1 / 1000)
    assert peak_compute("fp32", cpu).tops == pytest.approx(2 * 32 * 2 * 2.1 / 1000)
    no_amx = {**cpu, "isa": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], "max_mhz": 3000.0}
    vnni = peak_compute("int8", no_amx)
    assert vnni.unit == "AVX-512 VNNI" and vnni.tops == pytest.approx(2 * 128 * 2 * 3.0 / 1000)  # turbo clock wins
    assert peak_compute("bf16", no_amx).unit == "AVX-512 BF16"
    assert peak_compute("int8", {**cpu, "isa": ["avx2"]}) is None  # no int8 dot-product unit known
    assert peak_compute("fp32", {**cpu, "mhz": None}) is None  # no clock known
    # ResNet-50 (4.089 GMACs) at 4.42 ms per image: 1.85 TOPS
    assert achieved_tops(4.089, 1, 4.42) == pytest.approx(2 * 4.089e9 / 4.42e-3 / 1e12)
