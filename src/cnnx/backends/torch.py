"""PyTorch runners: eager (the reference every artifact is compared against), torch.compile and CUDA graphs.

On GPU the timed step of `bench` returns CUDA-event compute time and an end-to-end step includes the
copies; on CPU the wall clock around the call is the latency."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .base import Runner


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, model: nn.Module, device: str = "cpu", precision: str = "fp32"):
        self.device = device
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.model: nn.Module | None = on_device(model, device, self.dtype).eval()
        self.forward: Callable | None = self.model

    @classmethod
    def runtime_details(cls) -> dict:
        return {"cuda": torch.version.cuda or "none (a CPU-only build)", "cuda_available": torch.cuda.is_available()}

    def close(self) -> None:
        self.model = self.forward = None  # a copy moved to the device (on_device) is freed with it

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device, self.dtype)
            assert self.forward is not None  # None only after close()
            return self.forward(x).float().cpu().numpy()

    def prepare(self, x_device: torch.Tensor) -> None:
        """Hook for subclasses that need an example input on the device before timing (CUDA graphs)."""

    def timed_steps(self, batch: np.ndarray):
        host = torch.from_numpy(batch).to(self.dtype)
        if self.device == "cpu":
            def cpu_step():
                assert self.forward is not None  # None only after close()
                with torch.inference_mode():
                    self.forward(host)
            return cpu_step, None

        x_dev = host.to(self.device)
        self.prepare(x_dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def compute_step():
            assert self.forward is not None  # None only after close()
            with torch.inference_mode():
                start.record()
                self.forward(x_dev)
                end.record()
            end.synchronize()
            return start.elapsed_time(end)

        def end_to_end_step():
            assert self.forward is not None  # None only after close()
            with torch.inference_mode():
                self.forward(host.to(self.device, non_blocking=False)).cpu()

        return compute_step, end_to_end_step


def on_device(model: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
    """`model` itself when its parameters and buffers already have this device and floating dtype, else a copy
    moved there: nn.Module.to works in place, and the caller's model (bench's cached eager model, the parity
    reference) must keep its fp32 weights for the cases that follow."""
    target = torch.device(device)
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == target.type and (target.index is None or t.device.index == target.index)
           and (t.dtype == dtype or not t.is_floating_point()) for t in tensors):
        return model
    return copy.deepcopy(model).to(device=device, dtype=dtype)


class TorchCompileRunner(TorchRunner):
    backend = "torch-compile"

    def __init__(self, model: nn.Module, device: str = "cpu", precision: str = "fp32"):
        super().__init__(model, device, precision)
        self.forward = torch.compile(self.model)


class TorchCudaGraphRunner(TorchRunner):
    """One forward pass captured in a CUDA graph; replaying it skips per-kernel launch overhead. The replay
    reads its static input in place, so calls copy new data into it."""

    backend = "torch-cudagraph"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if torch.cuda.is_available() else "CUDA graphs need a CUDA GPU (none is visible to PyTorch)"

    def prepare(self, x_device: torch.Tensor) -> None:
        assert self.model is not None  # None only after close()
        self.forward = cuda_graph(self.model, x_device)


def cuda_graph(module: nn.Module, static_input: torch.Tensor) -> Callable:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):  # warm up on a side stream, as capture requires
            module(static_input)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_output = module(static_input)

    def replay(x: torch.Tensor) -> torch.Tensor:
        if x.data_ptr() != static_input.data_ptr():
            static_input.copy_(x)
        graph.replay()
        return static_output

    return replay
