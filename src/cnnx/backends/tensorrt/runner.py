"""The Runner that executes a cnnx TensorRT plan on a GPU.

Thread safety: an execution context is not thread-safe, so calls are serialised with a lock (one GPU runs
them one after another anyway)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import UsageError
from ..base import Runner, RunOptions
from . import require_tensorrt, unavailable_reason
from .log import shared_logger
from .plan import batch_problem, check_plan


def io_dtypes(trt) -> tuple[dict, tuple]:
    """(TensorRT DataType -> torch dtype for the I/O tensors cnnx can bind, the float ones among them). FP8,
    INT4 and FP4 I/O cannot be filled from numpy, and no cnnx artifact has them."""
    import torch

    floats = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
              trt.DataType.BF16: torch.bfloat16}
    others = {trt.DataType.INT8: torch.int8, trt.DataType.UINT8: torch.uint8, trt.DataType.INT32: torch.int32,
              trt.DataType.INT64: torch.int64, trt.DataType.BOOL: torch.bool}
    return {**floats, **others}, tuple(floats)


class TensorRTRunner(Runner):
    """Runs a cnnx TensorRT plan: float32 NCHW (numpy or torch) in, float32 logits (numpy) out.

    Every I/O tensor of the plan is bound with its own dtype: the one input (float32, float16 or bfloat16; the
    batch is converted) and every output; the logits returned are the output the manifest names (or the only
    one), converted to float32. Plans that do not fit (several inputs, a non-float input or logits, an I/O type
    torch cannot hold) are refused when loaded.

    Everything happens on CUDA device `device`: the plan is checked against that GPU, deserialized and run there.
    Buffers are PyTorch CUDA tensors, bound by tensor name; inference runs on the runner's own stream, which
    first waits for the caller's current stream, so a CUDA input tensor is read only after the work that
    produced it (PyTorch's CUDA semantics: work on different streams is unordered unless one waits).
    For `bench`: `compute_step(x)` times execute_async_v3 alone with CUDA events (returns ms),
    `end_to_end_step(x)` includes host->device and device->host copies (returns None: wall clock), and
    `cuda_graph_step(x)` replays a captured CUDA graph of the enqueue (returns ms)."""

    backend = "tensorrt"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return unavailable_reason()

    def __init__(self, plan_path: str | Path, device: int = 0):
        trt = require_tensorrt()
        import torch

        from ...hardware import gpu_info

        self.plan_path = Path(plan_path)
        gpu = gpu_info(device)
        if gpu is None:
            raise UsageError(f"there is no CUDA device {device} (this machine has {torch.cuda.device_count()})",
                             "pass a device index that nvidia-smi lists")
        self.manifest = check_plan(self.plan_path, str(trt.__version__), str(gpu.get("compute_capability")))
        self.device = torch.device("cuda", device)
        self._logger = shared_logger(trt)
        mark = self._logger.mark()
        with torch.cuda.device(self.device):  # TensorRT uses the current device: the engine lives on `device`
            runtime = trt.Runtime(self._logger)
            if self.manifest.build_flags.get("version_compatible"):
                runtime.engine_host_code_allowed = True  # version-compatible plans embed the lean runtime
            engine = runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
            if engine is None:
                detail = "; ".join(self._logger.errors_since(mark)[-3:]) or "no detail from TensorRT"
                raise UsageError(f"TensorRT could not deserialize '{self.plan_path}': {detail}",
                                 f"rebuild it: {self.manifest.rebuild_command}")
            self._describe_io(trt, engine)
            context = engine.create_execution_context()
            self.stream = torch.cuda.Stream(device=self.device)
        self._runtime, self._engine, self._context = runtime, engine, context
        self._buffers: dict[int, dict] = {}
        self._bound_batch: int | None = None
        self._graphs: dict[int, tuple] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, options: RunOptions) -> TensorRTRunner:
        """A plan is run as it is; an ONNX artifact through a plan built from it for batches up to
        `options.max_batch`, or reused when one built from the same file with the same settings on this
        TensorRT and GPU is in the engines folder (build.py)."""
        if path.suffix.lower() == ".onnx":
            from .build import build_engine

            path, _ = build_engine(path, max_batch=options.max_batch, reuse=True)
        return cls(path)

    def close(self) -> None:
        with self._lock:  # not while a call is running on the context
            self._graphs.clear()
            self._buffers.clear()
            self._context = self._engine = self._runtime = None

    def _describe_io(self, trt, engine) -> None:
        """Names, dtypes and the batch range of the plan's I/O tensors; refuses a plan cnnx cannot run."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        hint = "cnnx runs plans built by `cnnx build` from a cnnx ONNX artifact (one image input, logits out)"
        if len(inputs) != 1 or not outputs:
            raise UsageError(f"'{self.plan_path}' has inputs {inputs} and outputs {outputs}; cnnx runs "
                             "classifiers with one input", hint)
        wanted = self.manifest.output.name if self.manifest.output else None
        if len(outputs) > 1 and wanted not in outputs:
            raise UsageError(f"'{self.plan_path}' has outputs {outputs} and its manifest names none of them as "
                             "the logits", hint)
        self.input_name = inputs[0]
        self.output_name = outputs[0] if len(outputs) == 1 else wanted
        torch_dtypes, float_types = io_dtypes(trt)
        types = {n: engine.get_tensor_dtype(n) for n in names}
        for name, dtype in types.items():
            must_be_float = name in (self.input_name, self.output_name)
            if dtype not in torch_dtypes or (must_be_float and dtype not in float_types):
                role = "input" if name == self.input_name else ("logits" if name == self.output_name else "output")
                raise UsageError(f"'{self.plan_path}': {role} tensor '{name}' is {dtype.name}, which cnnx cannot "
                                 f"{'feed images to or read logits from' if must_be_float else 'bind'}", hint)
        self._dtypes = {n: torch_dtypes[t] for n, t in types.items()}
        self._outputs = outputs
        lo, _, hi = engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(lo[0]), int(hi[0])
        self.input_dims = tuple(int(d) for d in list(lo)[1:])

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

    def _bind(self, batch: int) -> dict:
        """Device tensors for every I/O tensor at `batch`, bound to the context (re-bound when batch changes),
        plus a pinned host copy of the input ("host")."""
        import torch

        context = self._context
        if batch not in self._buffers:
            shape = (batch, *self.input_dims)
            context.set_input_shape(self.input_name, shape)
            tensors = {self.input_name: torch.empty(shape, dtype=self._dtypes[self.input_name], device=self.device)}
            for name in self._outputs:
                out_shape = tuple(int(d) for d in context.get_tensor_shape(name))
                if any(d < 0 for d in out_shape):
                    raise UsageError(f"'{self.plan_path}': output '{name}' has a data-dependent shape {out_shape}; "
                                     "cnnx binds outputs of known shape only")
                tensors[name] = torch.empty(out_shape, dtype=self._dtypes[name], device=self.device)
            tensors["host"] = torch.empty(shape, dtype=torch.float32, pin_memory=True)
            self._buffers[batch] = tensors
            self._bound_batch = None
        tensors = self._buffers[batch]
        if self._bound_batch != batch:
            context.set_input_shape(self.input_name, tuple(tensors[self.input_name].shape))
            for name in (self.input_name, *self._outputs):
                context.set_tensor_address(name, tensors[name].data_ptr())
            self._bound_batch = batch
        return tensors

    def _enqueue(self, stream_handle: int) -> None:
        mark = self._logger.mark()
        if not self._context.execute_async_v3(stream_handle):
            detail = "; ".join(self._logger.errors_since(mark)[-3:]) or "TensorRT logged no error"
            raise RuntimeError(f"TensorRT execute_async_v3 failed: {detail}")

    def _stage(self, batch) -> dict:
        """Copy `batch` (numpy or torch, any device) into the bound input buffer on the runner's stream. A CUDA
        tensor is read only after its device's current stream (where its producer ran) reaches this point."""
        import torch

        tensors = self._bind(self._check_batch(tuple(batch.shape)))
        x = tensors[self.input_name]
        if isinstance(batch, torch.Tensor) and batch.device.type == "cuda":
            self.stream.wait_stream(torch.cuda.current_stream(batch.device))
        with torch.cuda.stream(self.stream):
            if isinstance(batch, torch.Tensor):
                x.copy_(batch, non_blocking=batch.device.type == "cuda")
            else:
                host = tensors["host"]
                host.numpy()[...] = np.asarray(batch, dtype=np.float32)
                x.copy_(host, non_blocking=True)
        return tensors

    # -- the Runner interface ---------------------------------------------------------------------------------
    def __call__(self, batch) -> np.ndarray:
        import torch

        with self._lock, torch.cuda.device(self.device):
            tensors = self._stage(batch)
            with torch.cuda.stream(self.stream):
                self._enqueue(self.stream.cuda_stream)
                result = tensors[self.output_name].float().cpu()  # ordered after the enqueue on this stream
            self.stream.synchronize()
            return result.numpy()

    # -- timing hooks for bench -------------------------------------------------------------------------------
    def timed_steps(self, batch):
        """CUDA-event compute time, plus end-to-end with the copies."""
        return self.compute_step(batch), self.end_to_end_step(batch)

    def compute_step(self, batch) -> Callable[[], float]:
        """A step returning the GPU time (ms, CUDA events) of one execute_async_v3; inputs stay on device."""
        import torch

        with torch.cuda.device(self.device):
            self._stage(batch)
            self.stream.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        size = int(batch.shape[0])

        def step() -> float:
            with torch.cuda.device(self.device):
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
        with torch.cuda.device(self.device):
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
            with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
                start.record()
                graph.replay()
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        return step
