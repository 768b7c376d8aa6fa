"""The Runner that executes a cnnx TensorRT plan on a GPU.

Thread safety: an execution context is not thread-safe, so calls are serialised with a lock (one GPU runs
them one after another anyway)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ...errors import UsageError
from ..base import Runner
from . import require_tensorrt, unavailable_reason
from .build import make_logger
from .plan import batch_problem, check_plan

_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16"}  # by DataType name; cnnx artifacts keep fp32 I/O


class TensorRTRunner(Runner):
    """Runs a cnnx TensorRT plan: float32 NCHW (numpy or torch) in, float32 logits (numpy) out.

    Buffers are PyTorch CUDA tensors, bound by tensor name; inference runs on its own (non-default) stream.
    For `bench`: `compute_step(x)` times execute_async_v3 alone with CUDA events (returns ms),
    `end_to_end_step(x)` includes host->device and device->host copies (returns None: wall clock), and
    `cuda_graph_step(x)` replays a captured CUDA graph of the enqueue (returns ms). Calls are serialised by a
    lock: an execution context is not thread-safe."""

    backend = "tensorrt"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return unavailable_reason()

    def __init__(self, plan_path: str | Path, device: int = 0):
        trt = require_tensorrt()
        import torch

        from ...hardware import gpu_info

        self.plan_path = Path(plan_path)
        gpu = gpu_info() or {}
        self.manifest = check_plan(self.plan_path, str(trt.__version__), str(gpu.get("compute_capability")))
        self.device = torch.device("cuda", device)
        self._logger = make_logger(trt)
        runtime = trt.Runtime(self._logger)
        if self.manifest.build_flags.get("version_compatible"):
            runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
        engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if engine is None:
            detail = "; ".join(self._logger.errors[-3:]) or "no detail from TensorRT"
            raise UsageError(f"TensorRT could not deserialize '{self.plan_path}': {detail}",
                             f"rebuild it: {self.manifest.rebuild_command}")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise UsageError(f"'{self.plan_path}' has inputs {inputs} and outputs {outputs}; cnnx runs "
                             "single-input classifiers")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self._output_dtype = getattr(torch, _TORCH_DTYPES.get(engine.get_tensor_dtype(self.output_name).name,
                                                              "float32"))
        lo, _, hi = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.input_dims = tuple(int(d) for d in list(lo)[1:])
        context = engine.create_execution_context()
        self._runtime, self._engine, self._context = runtime, engine, context
        self.stream = torch.cuda.Stream(device=self.device)
        self._buffers: dict[int, tuple] = {}
        self._bound_batch: int | None = None
        self._graphs: dict[int, tuple] = {}
        self._lock = threading.Lock()

    # -- buffers and binding ----------------------------------------------------------------------------------
    def _check_batch(self, shape: tuple[int, ...]) -> int:
        if tuple(shape[1:]) != self.input_dims:
            raise UsageError(f"input shape {tuple(shape)} does not match the engine's input "
                             f"(N, {', '.join(map(str, self.input_dims))})")
        problem = batch_problem(int(shape[0]), self.min_batch, self.max_batch)
        if problem:
            raise UsageError(problem, f"rebuild with a wider range: cnnx build ... --max-batch {shape[0]}"
                             if shape[0] > self.max_batch else "use a batch inside the profile")
        return int(shape[0])

    def _bind(self, batch: int):
        """Input/output device tensors for `batch`, bound to the context (re-bound only when batch changes)."""
        import torch

        context = self._context
        if batch not in self._buffers:
            x = torch.empty((batch, *self.input_dims), dtype=torch.float32, device=self.device)
            context.set_input_shape(self.input_name, tuple(x.shape))
            out_shape = tuple(context.get_tensor_shape(self.output_name))
            y = torch.empty(out_shape, dtype=self._output_dtype, device=self.device)
            host_in = torch.empty(x.shape, dtype=torch.float32, pin_memory=True)
            self._buffers[batch] = (x, y, host_in)
            self._bound_batch = None
        x, y, host_in = self._buffers[batch]
        if self._bound_batch != batch:
            context.set_input_shape(self.input_name, tuple(x.shape))
            context.set_tensor_address(self.input_name, x.data_ptr())
            context.set_tensor_address(self.output_name, y.data_ptr())
            self._bound_batch = batch
        return x, y, host_in

    def _enqueue(self, stream_handle: int) -> None:
        if not self._context.execute_async_v3(stream_handle):
            raise RuntimeError(f"TensorRT execute_async_v3 failed: {'; '.join(self._logger.errors[-3:])}")

    def _stage(self, batch) -> tuple:
        """Copy `batch` (numpy or torch, any device) into the bound input buffer on the runner's stream."""
        import torch

        shape = tuple(batch.shape)
        x, y, host_in = self._bind(self._check_batch(shape))
        with torch.cuda.stream(self.stream):
            if isinstance(batch, torch.Tensor):
                x.copy_(batch.to(torch.float32), non_blocking=batch.device.type == "cuda")
            else:
                host_in.numpy()[...] = np.asarray(batch, dtype=np.float32)
                x.copy_(host_in, non_blocking=True)
        return x, y

    # -- the Runner interface ---------------------------------------------------------------------------------
    def __call__(self, batch) -> np.ndarray:
        import torch

        with self._lock:
            _, y = self._stage(batch)
            with torch.cuda.stream(self.stream):
                self._enqueue(self.stream.cuda_stream)
                result = y.float().cpu()  # ordered after the enqueue on this stream
            self.stream.synchronize()
            return result.numpy()

    # -- timing hooks for bench -------------------------------------------------------------------------------
    def timed_steps(self, batch):
        """CUDA-event compute time, plus end-to-end with the copies."""
        return self.compute_step(batch), self.end_to_end_step(batch)

    def compute_step(self, batch) -> Callable[[], float]:
        """A step returning the GPU time (ms, CUDA events) of one execute_async_v3; inputs stay on device."""
        import torch

        self._stage(batch)
        self.stream.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        size = int(batch.shape[0])

        def step() -> float:
            self._bind(size)
            start.record(self.stream)
            self._enqueue(self.stream.cuda_stream)
            end.record(self.stream)
            end.synchronize()
            return start.elapsed_time(end)

        return step

    def end_to_end_step(self, batch) -> Callable[[], None]:
        """A step running host input -> device -> engine -> host output; returns None (wall clock is the
        latency, as for the CPU backends)."""
        def step() -> None:
            self(batch)

        return step

    def cuda_graph_step(self, batch) -> Callable[[], float]:
        """A step replaying a CUDA graph of execute_async_v3 (captured after one normal run, as TensorRT needs);
        returns GPU ms from CUDA events."""
        import torch

        size = int(batch.shape[0])
        self._stage(batch)
        with torch.cuda.stream(self.stream):
            self._enqueue(self.stream.cuda_stream)  # the normal run: lets TensorRT finish shape-dependent setup
        self.stream.synchronize()
        if size not in self._graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue(torch.cuda.current_stream().cuda_stream)
            self._graphs[size] = (graph,)
        graph = self._graphs[size][0]
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step() -> float:
            with torch.cuda.stream(self.stream):
                start.record()
                graph.replay()
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return step
