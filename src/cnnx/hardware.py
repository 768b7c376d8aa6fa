"""What machine a measurement ran on: CPU model and ISA features, cores, GPU, library versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from .artifacts import tool_versions

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags], "logical_cores": os.cpu_count()}


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
