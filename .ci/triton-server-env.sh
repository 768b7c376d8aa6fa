#!/usr/bin/env bash
# The real Triton server's own Python environment, for tests/test_triton_server.py and scripts/triton_load.py:
# tritonserver 2.51.0 from the nvidia-pytriton wheel, numpy<2 (the 2.51 python backend breaks under numpy 2),
# the runtimes cnnx.load uses inside model.py, and cnnx itself from this checkout (no torch).
#   .ci/triton-server-env.sh [VENV]        default VENV: .venv-tritonserver (git-ignored)
# Then: CNNX_TRITON_SERVER_VENV=VENV python -m pytest tests/test_triton_server.py
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-tritonserver}
python3 -m venv "$VENV"
# --no-deps: the requirements file is the whole closure, pinned (pytriton's own Python deps are not needed:
# only the server binary and the python backend in its wheel are used)
"$VENV/bin/python" -m pip install -q --no-deps -r .ci/triton-server-requirements.txt
# cnnx from this checkout, through a .pth file (what an editable install amounts to, without building one;
# the stub's embedded Python ignores PYTHONPATH)
"$VENV/bin/python" -c 'import sys, sysconfig; open(sysconfig.get_paths()["purelib"] + "/cnnx-checkout.pth", "w").write(sys.argv[1] + "\n")' "$PWD/src"
"$VENV/bin/python" -c 'import sys, cnnx.runtime, numpy, onnx, onnxruntime, openvino, PIL; print("server venv ready:", sys.prefix)'
