"""What machine a measurement ran on: CPU model and ISA features, cores, GPU, library versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import dataclass

from .artifacts import tool_versions

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    """CPU model, vendor, ISA flags, logical and physical cores, and the clock /proc/cpuinfo reports (MHz)."""
    flags: set[str]
    model, vendor, flags, mhz, physical = platform.processor() or platform.machine(), None, set(), None, set()
    cores_per_socket = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = (part.strip() for part in line.partition(":"))
                if key == "model name":
                    model = value
                elif key == "vendor_id":
                    vendor = value
                elif key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "cpu MHz" and mhz is None:
                    mhz = float(value)
                elif key == "physical id":
                    physical.add(value)
                elif key == "cpu cores" and cores_per_socket is None:
                    cores_per_socket = int(value)
    except (OSError, ValueError):
        pass
    cores = cores_per_socket * max(1, len(physical)) if cores_per_socket else os.cpu_count()
    return {"model": model, "vendor": vendor, "isa": [f for f in ISA_FLAGS if f in flags],
            "logical_cores": os.cpu_count(), "physical_cores": cores, "mhz": mhz, "max_mhz": _max_mhz()}


def _max_mhz() -> float | None:
    """The highest clock the kernel's cpufreq driver reports (turbo), if it reports one (not in most VMs)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1000
    except (OSError, ValueError):
        return None


# Peak multiply-accumulates per cycle per core, by precision, first ISA flag that the CPU has wins.
# Intel (4th Gen Xeon, "Accelerate AI Workloads with Intel AMX", p. 4, as quoted by PyTorch's AMX recipe,
# pytorch.org/tutorials/recipes/amx.html): AMX does 2,048 INT8 or 1,024 BF16 operations per cycle per core,
# AVX-512 VNNI 256 INT8 operations, AVX-512 64 FP32 operations (one multiply-accumulate = 2 operations:
# TDPBSSD multiplies 16x64 by 64x16 int8 tiles, 16,384 MACs, in 16 cycles). The AVX-512 figures assume two
# 512-bit FMA units per core, as on Xeon Gold/Platinum; the others follow from instruction widths under the
# same assumption (AVX-512 BF16: VDPBF16PS, 32 bf16 MACs per instruction; AVX-VNNI: 256-bit VPDPBUSD, 32 int8
# MACs; AVX2: 8 fp32 FMA lanes).
PEAK_MACS_PER_CYCLE = {
    "int8": (("amx_int8", "AMX-INT8", 1024), ("avx512_vnni", "AVX-512 VNNI", 128), ("avx_vnni", "AVX-VNNI", 64)),
    "bf16": (("amx_bf16", "AMX-BF16", 512), ("avx512_bf16", "AVX-512 BF16", 64)),
    "fp32": (("avx512f", "AVX-512 FMA", 32), ("avx2", "AVX2 FMA", 16)),
}


@dataclass(frozen=True)
class Peak:
    precision: str
    unit: str  # e.g. "AMX-INT8"
    macs_per_cycle: int  # per core
    cores: int
    ghz: float
    clock_source: str

    @property
    def tops(self) -> float:
        """Peak tera-operations per second (2 operations per multiply-accumulate)."""
        return 2 * self.macs_per_cycle * self.cores * self.ghz / 1000

    def describe(self) -> str:
        return (f"{self.precision}: {self.unit}, {self.macs_per_cycle} MACs/cycle/core x {self.cores} cores x "
                f"{self.ghz:.2f} GHz ({self.clock_source}) = {self.tops:.2f} TOPS")


def peak_compute(precision: str, cpu: dict, threads: int | None = None) -> Peak | None:
    """The machine's peak for `precision` ("fp32", "bf16", "int8") on the cores `threads` can use (a thread per
    core; all physical cores by default), at the highest clock known; None when no unit or clock is known."""
    ghz, source = ((cpu["max_mhz"], "cpufreq maximum") if cpu.get("max_mhz")
                   else (cpu.get("mhz"), "/proc/cpuinfo cpu MHz"))
    if not ghz:
        return None
    cores = min(threads or cpu["physical_cores"], cpu["physical_cores"])
    for flag, unit, macs in PEAK_MACS_PER_CYCLE.get(precision, ()):
        if flag in cpu["isa"]:
            return Peak(precision, unit, macs, cores, ghz / 1000, source)
    return None


def achieved_tops(gmacs: float, batch: int, latency_ms: float) -> float:
    """Tera-operations per second of a model of `gmacs` giga-MACs per image, at `batch` images in latency_ms."""
    return 2 * gmacs * batch / latency_ms  # (2 * gmacs * 1e9 * batch) / (latency_ms / 1e3) / 1e12


def gpu_info(device: int = 0) -> dict | None:
    """Name, compute capability, memory, CUDA and driver of CUDA device `device` (None: no such GPU)."""
    import torch

    if not torch.cuda.is_available() or not 0 <= device < torch.cuda.device_count():
        return None
    props = torch.cuda.get_device_properties(device)
    info = {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda}
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None
    return info


def machine_info(threads: int | None = None) -> dict:
    return {"cpu": cpu_info(), "threads_used": threads, "gpu": gpu_info(), "os": platform.platform(),
            "versions": tool_versions()}


def describe(machine: dict) -> str:
    """One line naming the machine, for reports and README tables."""
    cpu = machine["cpu"]
    text = f"{cpu['model']} ({cpu['logical_cores']} logical cores; {', '.join(cpu['isa']) or 'no AVX-512/AMX'})"
    if machine.get("threads_used"):
        text += f", {machine['threads_used']} threads"
    if machine.get("gpu"):
        gpu = machine["gpu"]
        text += f"; GPU {gpu['name']} (sm {gpu['compute_capability']}, driver {gpu.get('driver', '?')})"
    return text
