"""A real Triton Inference Server on this machine, CPU only: the `tritonserver` binary (2.51.0) that ships in
the `nvidia-pytriton` wheel, run on the loopback from a Python environment of its own (the "server venv").
The server test (tests/test_triton_server.py) and scripts/triton_load.py start it through this module;
`.ci/triton-server-env.sh VENV` builds the venv.

    server = LocalTritonServer(repo, venv, work_dir)
    with server:                                  # free ports; returns once every model loaded or failed
        server.http_url, server.grpc_url          # "127.0.0.1:<port>"
        server.model_states()                     # {name: (state, reason)} from the repository index
    server.returncode                             # 0 after a clean SIGTERM shutdown

What the server needs, and why (each verified on this wheel):
- a backend folder with the python backend: `libtriton_python.so` and `triton_python_backend_utils.py` from
  the wheel, and the stub built for the venv's Python minor version (`python_backend_stubs/3.X/`);
- `PATH` with the venv's bin first: the stub's embedded Python finds its environment through `python3`
  (PYTHONPATH is ignored: the stub embeds Python in isolated mode);
- `LD_LIBRARY_PATH` with the interpreter's libpython folder and the wheel's `nvidia_pytriton.libs`: the
  copied stub finds neither otherwise, and then the model load hangs for ever;
- numpy < 2 in the venv: the 2.51 stub mangles tensors under numpy 2 (empty outputs, crashed stubs).
Nothing here imports anything outside the standard library, so any interpreter can drive the server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

VENV_VARIABLE = "CNNX_TRITON_SERVER_VENV"  # where the server venv is (.ci/run sets it)
SETUP_COMMAND = ".ci/triton-server-env.sh"
_FACTS = ("import sys, sysconfig; print(sysconfig.get_paths()['purelib']); "
          "print(f'{sys.version_info[0]}.{sys.version_info[1]}'); print(sysconfig.get_config_var('LIBDIR')); "
          "print(sysconfig.get_config_var('LDLIBRARY')); import numpy; print(numpy.__version__)")


class ServerEnvironment:
    """The server venv: where the wheel's binary, libraries, backend and stub are, and the process env."""

    def __init__(self, venv: str | Path):
        self.venv = Path(venv).absolute()  # not resolved: a venv's python is a symlink that must stay one
        facts = subprocess.run([str(self.venv / "bin" / "python3"), "-c", _FACTS], capture_output=True,
                               text=True, timeout=60)
        if facts.returncode != 0:
            raise RuntimeError(f"cannot inspect the server venv {self.venv}: {facts.stderr.strip()[-500:]}")
        site, self.python_minor, libdir, ldlibrary, self.numpy_version = facts.stdout.split("\n")[:5]
        self.site = Path(site)
        self.libpython = Path(libdir) / ldlibrary
        wheel = self.site / "pytriton" / "tritonserver"
        self.tritonserver = wheel / "bin" / "tritonserver"
        self.libs = self.site / "nvidia_pytriton.libs"
        self.backend_files = [wheel / "backends" / "python" / "libtriton_python.so",
                              wheel / "backends" / "python" / "triton_python_backend_utils.py",
                              wheel / "python_backend_stubs" / self.python_minor / "triton_python_backend_stub"]

    def problem(self) -> str | None:
        """Why this venv cannot run the server (None: it can)."""
        for path in (self.tritonserver, self.libs, *self.backend_files):
            if not path.exists():
                return f"{path} is missing (is nvidia-pytriton 0.7.0 installed in {self.venv}?)"
        if not self.libpython.is_file():
            return f"the python backend stub needs a shared libpython, but {self.libpython} does not exist"
        if int(self.numpy_version.split(".")[0]) >= 2:
            return f"numpy {self.numpy_version} in {self.venv}: the 2.51 python backend needs numpy < 2"
        return None

    def make_backend_dir(self, dest: Path) -> Path:
        """dest/python/: the python backend and the stub for this venv's Python."""
        folder = Path(dest) / "python"
        folder.mkdir(parents=True, exist_ok=True)
        for source in self.backend_files:
            shutil.copy2(source, folder / source.name)
        return Path(dest)

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        libs = f"{self.libpython.parent}{os.pathsep}{self.libs}"
        env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else libs
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTritonServer:
    """One tritonserver process on free loopback ports, loading every model of `repo` at start-up and
    staying up when some fail (so that their failures can be read from the repository index)."""

    def __init__(self, repo: str | Path, venv: str | Path | ServerEnvironment, work_dir: str | Path, *,
                 extra_args: tuple[str, ...] = (), start_timeout: float = 120.0):
        self.repo = Path(repo).resolve()
        self.environment = venv if isinstance(venv, ServerEnvironment) else ServerEnvironment(venv)
        self.work_dir = Path(work_dir)
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.http_port, self.grpc_port = free_port(), free_port()
        # our own prefix for the python backend's shared-memory regions: two servers on one machine must
        # not share them, and a killed server's leftovers in /dev/shm can be found and removed
        self.shm_prefix = f"cnnx_{uuid.uuid4().hex[:8]}_"
        self.log_path = self.work_dir / f"tritonserver-{self.http_port}.log"
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            str(self.environment.tritonserver),
            f"--model-repository={self.repo}",
            f"--backend-directory={self.work_dir / 'backends'}",
            "--http-address=127.0.0.1", f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            # no GPU here: skip the pinned-memory pool and GPU metrics instead of probing CUDA
            "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
            # a model that fails to load must not stop the server: the test reads why it failed
            "--exit-on-error=false",
            # cnnx writes complete configs: validate them as written (inputs and outputs too) before the
            # backend is looked up, instead of letting a backend fill in what is missing
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.extra_args,
        ]

    def start(self) -> LocalTritonServer:
        problem = self.environment.problem()
        if problem:
            raise RuntimeError(problem)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.environment.make_backend_dir(self.work_dir / "backends")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.environment.process_env())
        self._wait_until_live()
        return self

    def _wait_until_live(self) -> None:
        """The HTTP service starts after the initial load of every model (loaded or failed), so a live
        server has finished loading. A stub that cannot start hangs its load with no timeout: hence ours."""
        assert self.process is not None  # start() launched it just before
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}:\n"
                                   f"{self.log_text()[-3000:]}")
            try:
                if self.request("GET", "/v2/health/live")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"tritonserver was not live after {self.start_timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """An HTTP request to the server: (status, body); error statuses are returned, not raised."""
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def model_states(self) -> dict[str, tuple[str, str]]:
        """{model: (state, reason)} from the repository index. A model folder without a version folder is
        absent from it: compare with the folders in the repository."""
        status, body = self.request("POST", "/v2/repository/index", b"{}")
        if status != 200:
            raise RuntimeError(f"repository index: HTTP {status} {body[:300]!r}")
        return {m["name"]: (m.get("state", ""), m.get("reason", "")) for m in json.loads(body)}

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to the server's own PID and wait; SIGKILL only if it does not exit in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode

    def leftover_shared_memory(self) -> list[Path]:
        """This server's python-backend regions still in /dev/shm: none after a clean shutdown, but a server
        killed or crashed leaves them behind."""
        return sorted(Path("/dev/shm").glob(f"{self.shm_prefix}*"))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> LocalTritonServer:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        for region in self.leftover_shared_memory():
            region.unlink(missing_ok=True)
