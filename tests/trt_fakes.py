"""Stand-ins for what cannot run on the CPU machines: the `tensorrt` module and PyTorch's CUDA layer.

They model the documented behaviour the TensorRT backend relies on, so tests check outcomes (the plan written,
the logits returned, what the timing cache file holds), never the order of calls:
- FakeTensorRT: Builder/OnnxParser/Runtime remember the logger they were given; a build adds entries to the
  config's timing cache (a set of keys serialized as text, combined by union as ITimingCache.combine appends);
  create_timing_cache may return None; set_timing_cache(None) raises TypeError as pybind11 does; an engine
  computes logits[i, j] = mean(input[i]) + j into whatever output buffer is bound, and execute_async_v3 fails
  (returns False and logs an error) when an I/O tensor has no address or the current CUDA device is not the
  one the engine was deserialized on (TensorRT engines are tied to that device).
- FakeCuda: CUDA "device" tensors are CPU tensors that report a CUDA device; streams model PyTorch's CUDA
  semantics for the case that matters: work queued on a stream (by the test, standing in for a producer) has
  not happened until someone waits for that stream (wait_stream) or synchronizes it. Work issued on any other
  stream runs at once, so reading a tensor without waiting for its producer's stream reads stale data.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

# ---------------------------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------------------------

class FakeCudaTensor(torch.Tensor):
    """A CPU tensor that says it lives on a CUDA device."""

    cuda_index = 0

    @property
    def device(self):
        return torch.device("cuda", self.cuda_index)

    def cpu(self):
        return torch.Tensor.as_subclass(self, torch.Tensor).clone()


def cuda_tensor(data: torch.Tensor, index: int = 0) -> FakeCudaTensor:
    t = torch.Tensor._make_subclass(FakeCudaTensor, data.clone())
    t.cuda_index = index
    return t


class FakeStream:
    def __init__(self, cuda, device):
        self.cuda, self.device = cuda, torch.device(device)
        self.pending: list = []
        self.cuda_stream = id(self)

    def enqueue(self, work) -> None:
        """Queue work on this stream (what a producer kernel is until the stream runs it)."""
        self.pending.append(work)

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()

    def wait_stream(self, other: FakeStream) -> None:
        other.run_pending()  # everything queued on `other` so far happens before what follows on this stream

    def synchronize(self) -> None:
        self.run_pending()


class FakeEvent:
    """A CUDA event whose elapsed time is a fixed 0.25 ms (timing code runs; the number means nothing)."""

    def __init__(self, enable_timing=False):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return 0.25


@dataclass
class FakeCuda:
    """Installed over torch.cuda / torch.empty by `install(monkeypatch)`."""

    device_count: int = 1
    current: int = 0
    tensors: dict = field(default_factory=dict)  # data_ptr -> FakeCudaTensor (what TensorRT reads by address)
    default_streams: dict = field(default_factory=dict)
    current_streams: dict = field(default_factory=dict)

    def default_stream(self, index: int) -> FakeStream:
        return self.default_streams.setdefault(index, FakeStream(self, f"cuda:{index}"))

    def current_stream(self, device=None) -> FakeStream:
        index = self.current if device is None else torch.device(device).index
        index = self.current if index is None else index
        return self.current_streams.get(index) or self.default_stream(index)

    @contextlib.contextmanager
    def device(self, device):
        index = torch.device(device).index if not isinstance(device, int) else device
        previous, self.current = self.current, self.current if index is None else index
        try:
            yield
        finally:
            self.current = previous

    @contextlib.contextmanager
    def stream(self, stream: FakeStream):
        index = stream.device.index
        previous = self.current_streams.get(index)
        self.current_streams[index] = stream
        try:
            yield
        finally:
            self.current_streams[index] = previous

    def empty(self, *shape, dtype=None, device=None, pin_memory=False, real_empty=torch.empty, **kwargs):
        device = torch.device(device) if device is not None else None
        if device is None or device.type != "cuda":
            return real_empty(*shape, dtype=dtype, **kwargs)  # pinned host memory is plain host memory here
        t = cuda_tensor(real_empty(*shape, dtype=dtype), device.index if device.index is not None else self.current)
        self.tensors[t.data_ptr()] = t
        return t

    def install(self, monkeypatch) -> FakeCuda:
        monkeypatch.setattr(torch, "empty", self.empty)
        monkeypatch.setattr(torch.cuda, "Stream",
                            lambda device=None: FakeStream(self, device or f"cuda:{self.current}"))
        monkeypatch.setattr(torch.cuda, "stream", self.stream)
        monkeypatch.setattr(torch.cuda, "current_stream", self.current_stream)
        monkeypatch.setattr(torch.cuda, "device", self.device)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.device_count)
        monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
        return self


# ---------------------------------------------------------------------------------------------------------------
# TensorRT
# ---------------------------------------------------------------------------------------------------------------

class EnumValue:
    """A pybind11 enum value: hashable, with a .name."""

    def __init__(self, name: str):
        self.name = name


class DataType:
    FLOAT, HALF, BF16, INT8, UINT8, INT32, INT64, BOOL, FP8 = (
        EnumValue(n) for n in ("FLOAT", "HALF", "BF16", "INT8", "UINT8", "INT32", "INT64", "BOOL", "FP8"))


_TORCH = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT8": torch.int8,
          "UINT8": torch.uint8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool}


@dataclass
class IOTensor:
    name: str
    input: bool
    dtype: object
    dims: tuple  # without the batch


DEFAULT_IO = (IOTensor("images", True, DataType.FLOAT, (3, 224, 224)),
              IOTensor("logits", False, DataType.FLOAT, (1000,)))


class FakeTensorRT:
    """A `tensorrt` module stand-in (see the module docstring). `builds` counts build_serialized_network calls;
    `loggers` holds every logger handed to a Builder, OnnxParser or Runtime."""

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO = 0, 1, 2, 3

        def __init__(self):
            pass

    class IProgressMonitor:
        def __init__(self):
            pass

    DataType = DataType
    TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    BuilderFlag = SimpleNamespace(TF32="TF32", VERSION_COMPATIBLE="VERSION_COMPATIBLE")

    def __init__(self, version: str = "10.13.0.35", *, cuda: FakeCuda | None = None, io=DEFAULT_IO,
                 batch_range=(1, 8), parse_ok: bool = True, build_error: str | None = None,
                 cache_creation_fails: bool = False, during_build=None):
        self.__version__ = version
        self.cuda, self.io, self.batch_range = cuda, io, batch_range
        self.builds, self.loggers, self.calls = 0, [], []
        self.parse_ok, self.build_error = parse_ok, build_error
        self.cache_creation_fails, self.during_build = cache_creation_fails, during_build
        levels = {"AMPERE_PLUS": "AMPERE_PLUS"}
        if tuple(int(p) for p in version.split(".")[:2]) >= (10, 9):  # bound from TensorRT 10.9 on
            levels["SAME_COMPUTE_CAPABILITY"] = "SAME_COMPUTE_CAPABILITY"
        self.HardwareCompatibilityLevel = SimpleNamespace(**levels)
        fake = self

        class Builder:
            def __init__(self, logger):
                fake.loggers.append(logger)

            def create_network(self, flags):
                fake.calls.append(("network_flags", flags))
                return object()

            def create_builder_config(self):
                return Config(fake)

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.builds += 1
                monitor = config.progress_monitor
                if monitor is not None:
                    monitor.phase_start("Building engine", None, 2)
                    monitor.step_complete("Building engine", 0)
                    monitor.phase_finish("Building engine")
                if fake.build_error:
                    fake.loggers[-1].log(fake.ILogger.ERROR, fake.build_error)
                    return None
                if config.cache is not None:
                    config.cache.entries.add(f"tactic-{fake.builds}")
                if fake.during_build:
                    fake.during_build()
                return memoryview(b"PLAN-BYTES")

        class OnnxParser:
            def __init__(self, network, logger):
                fake.loggers.append(logger)
                self.num_errors = 0 if fake.parse_ok else 1

            def parse_from_file(self, path):
                return fake.parse_ok

            def get_error(self, i):
                return SimpleNamespace(desc=lambda: "Unsupported operator Foo", code=lambda: "UNSUPPORTED_NODE",
                                       node=lambda: 7, node_name=lambda: "/foo", node_operator=lambda: "Foo")

        class Runtime:
            def __init__(self, logger):
                fake.loggers.append(logger)
                self.logger = logger
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data):
                return Engine(fake, self.logger, fake.cuda.current) if bytes(data) else None

        self.Builder, self.OnnxParser, self.Runtime = Builder, OnnxParser, Runtime

    def create_cache(self, data: bytes):
        return None if self.cache_creation_fails else TimingCache.parse(bytes(data))


class TimingCache:
    def __init__(self, entries=()):
        self.entries = set(entries)

    @classmethod
    def parse(cls, data: bytes):
        text = data.decode()
        return cls(e for e in text.removeprefix("cache:").split(",") if e)

    def serialize(self):
        return memoryview(("cache:" + ",".join(sorted(self.entries))).encode())

    def combine(self, other, ignore_mismatch):
        self.entries |= other.entries
        return True


class Config:
    progress_monitor = None
    hardware_compatibility_level = None
    builder_optimization_level = 3

    def __init__(self, fake: FakeTensorRT):
        self.fake = fake
        self.cache, self.flags_cleared, self.flags_set, self.workspace = None, [], [], None

    def set_memory_pool_limit(self, pool, size):
        self.workspace = (pool, size)

    def clear_flag(self, flag):
        self.flags_cleared.append(flag)

    def set_flag(self, flag):
        self.flags_set.append(flag)

    def create_timing_cache(self, data):
        return self.fake.create_cache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        if not isinstance(cache, TimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments")  # pybind11 on None
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache

    def add_optimization_profile(self, profile):
        self.profile = profile
        return 0


class Profile:
    def set_shape(self, name, lo, opt, hi):
        self.shapes = (name, tuple(lo), tuple(opt), tuple(hi))


class Engine:
    def __init__(self, fake: FakeTensorRT, logger, device_index: int):
        self.fake, self.logger, self.device_index = fake, logger, device_index
        self.num_io_tensors = len(self.fake.io)

    def get_tensor_name(self, i):
        return self.fake.io[i].name

    def _io(self, name) -> IOTensor:
        return next(t for t in self.fake.io if t.name == name)

    def get_tensor_mode(self, name):
        return "INPUT" if self._io(name).input else "OUTPUT"

    def get_tensor_dtype(self, name):
        return self._io(name).dtype

    def get_tensor_profile_shape(self, name, profile_index):
        lo, hi = self.fake.batch_range
        dims = self._io(name).dims
        return (lo, *dims), (hi, *dims), (hi, *dims)

    def create_execution_context(self):
        return Context(self)


class Context:
    def __init__(self, engine: Engine):
        self.engine, self.addresses, self.batch = engine, {}, None

    def set_input_shape(self, name, shape):
        self.batch = int(shape[0])
        return True

    def get_tensor_shape(self, name):
        return (self.batch, *self.engine._io(name).dims)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream_handle):
        engine, fake = self.engine, self.engine.fake
        cuda = fake.cuda
        if cuda.current != engine.device_index:
            engine.logger.log(fake.ILogger.ERROR, f"engine of device {engine.device_index} run on device "
                                                  f"{cuda.current}")
            return False
        missing = [t.name for t in fake.io if t.name not in self.addresses]
        if missing:
            engine.logger.log(fake.ILogger.ERROR, f"no address set for {missing}")
            return False
        tensors = {t.name: cuda.tensors[self.addresses[t.name]] for t in fake.io}
        if any(t.cuda_index != engine.device_index for t in tensors.values()):
            engine.logger.log(fake.ILogger.ERROR, "a buffer is on another device than the engine")
            return False
        x = next(tensors[t.name] for t in fake.io if t.input).float()
        for t in fake.io:
            if not t.input:
                width = t.dims[0]
                values = x.reshape(len(x), -1).mean(dim=1, keepdim=True) + torch.arange(width)
                tensors[t.name].copy_(values.to(_TORCH[t.dtype.name]))
        return True


def expected_logits(x: torch.Tensor, width: int = 1000) -> torch.Tensor:
    """What a fake engine returns for input batch x."""
    return x.float().reshape(len(x), -1).mean(dim=1, keepdim=True) + torch.arange(width)
