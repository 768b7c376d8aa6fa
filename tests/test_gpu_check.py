"""scripts/gpu_check.py, the one command a GPU machine runs: here (no GPU, no TensorRT) it must still run end to
end, write its report, and say for each GPU step why it was skipped."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]


@pytest.mark.skipif(torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is not None,
                    reason="a GPU or TensorRT is here: the GPU check would really run its steps (run it directly)")
def test_gpu_check_runs_end_to_end_without_a_gpu_and_says_why(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT / "src")  # as on a device machine: a plain checkout, no install needed
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--out", str(out),
                             "--budget", "300"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "report.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["environment", "gpu-tests", "torch-bench", "tensorrt"]
    env_step = steps["environment"]
    assert env_step["status"] == "ok" and env_step["packages"]["torch"] == torch.__version__
    assert env_step["gpus"] == [] and env_step["packages"]["tensorrt"] is None
    cpu_reason = f"PyTorch {torch.__version__} is a CPU-only build" if torch.version.cuda is None \
        else "no CUDA GPU is visible to PyTorch"
    assert steps["gpu-tests"] == {**steps["gpu-tests"], "status": "skipped", "reason": cpu_reason}
    assert steps["torch-bench"]["status"] == "skipped" and steps["torch-bench"]["reason"] == cpu_reason
    trt = steps["tensorrt"]
    assert trt["status"] == "skipped"
    assert trt["reason"] == "not installed: tensorrt (this script installs nothing)"
    summary = (out / "summary.md").read_text()
    assert "| tensorrt | skipped |" in summary and cpu_reason in summary
    assert all((out / f"{name}.log").is_file() for name in steps)
