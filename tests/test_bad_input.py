"""What hostile or unlucky input used to break (issue 11), one case each: the exit code, the message, no traceback,
and exactly the files left behind. Each case failed on the code before its fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnx import parity
from cnnx.cli.render import parity_table
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.hold import HOLD_ENV
from cnnx.manifest import manifest_path

CLI = [sys.executable, "-m", "cnnx"]


def assert_refused(result, code: int, *phrases: str) -> None:
    output = result.output + (result.stderr if hasattr(result, "stderr") else "")
    assert result.exit_code == code, output
    assert "Traceback" not in output
    for phrase in phrases:
        assert phrase in " ".join(output.split()), (phrase, output)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def hidden_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.partial"))


@pytest.fixture(scope="module")
def nin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nin")
    return export_model(ExportOptions("nin", out_dir=out, check=False, target="onnx"))[0].path


# --- 1. --opset -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset", ["7", "13", "17", "99"])
def test_an_opset_the_exporter_cannot_write_is_refused_before_any_work(run_cli, tmp_path, opset):
    result = run_cli("export", "resnet18", "--opset", opset, "--out", tmp_path)
    assert_refused(result, 2, f"opset {opset} is outside what cnnx can export", "--opset 20")
    assert visible(tmp_path) == [] and hidden_temporaries(tmp_path) == []


def test_the_manifest_records_the_opset_the_file_has(tmp_path):
    import onnx

    [result] = export_model(ExportOptions("nin", out_dir=tmp_path, check=False, target="onnx", opset=21))
    declared = [o.version for o in onnx.load(result.path).opset_import if o.domain in ("", "ai.onnx")]
    assert declared == [21] and result.manifest.opset == 21


# --- 3. manifests bind to the graph -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, edit", [
    ("input", lambda m: m["input"].update(name="pixels")),
    ("input", lambda m: m["input"].update(shape=["batch", 3, 299, 299])),
    ("output", lambda m: m["output"].update(shape=["batch", 10])),
    ("opset", lambda m: m.update(opset=18)),
    ("model", lambda m: m.update(model="resnet50")),
    ("precision", lambda m: m.update(precision="fp16")),
])
def test_an_edited_manifest_is_refused_naming_the_field(run_cli, nin, tmp_path, field, edit):
    import cnnx
    from cnnx.errors import UsageError

    copy = tmp_path / nin.name
    shutil.copyfile(nin, copy)
    manifest = json.loads(manifest_path(nin).read_text())
    edit(manifest)
    manifest_path(copy).write_text(json.dumps(manifest))
    result = run_cli("triton", copy, "--repo", tmp_path / "repo")
    assert_refused(result, 2, "does not describe its graph", f"{field}: manifest says")
    assert not (tmp_path / "repo").exists()
    with pytest.raises(UsageError, match=f"{field}: manifest says"):
        cnnx.load(copy)


def test_passing_the_manifest_instead_of_the_artifact_says_which_file(run_cli, nin):
    result = run_cli("predict", manifest_path(nin), nin)
    assert_refused(result, 2, "is a manifest, not an artifact", f"pass the artifact it describes: {nin.name}")


# --- 4. failure states: Ctrl-C, SIGKILL, a full disk ------------------------------------------------------------

def _default_sigint() -> None:
    """The export child starts with SIGINT delivered and handled as a terminal's Ctrl-C would be, whatever
    signal mask or disposition the test worker happens to hold."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Export:
    """`cnnx export nin ...` in a child process held at a named point (cnnx/hold.py), so that a signal sent
    once it says it is holding always arrives at that point, however fast or loaded the machine is."""

    def __init__(self, out: Path, hold_at: str, *args: str):
        self.hold_at = hold_at
        self.process = subprocess.Popen([*CLI, "export", "nin", "--out", str(out), "--target", "onnx", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, HOLD_ENV: hold_at}, preexec_fn=_default_sigint)
        self.lines: list[str] = []

    def wait_for_exit(self, timeout: float = 120) -> str:
        """The rest of stderr once the export has exited. One still running after `timeout` is asked for its
        Python stacks (hold.py registers them on SIGUSR1), killed, and the stacks fail the test."""
        try:
            return self.process.communicate(timeout=timeout)[1]
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
            self.process.send_signal(signal.SIGUSR1)
            try:
                stderr = self.process.communicate(timeout=5)[1]
            except subprocess.TimeoutExpired as late:
                stderr = (late.stderr or b"").decode(errors="replace")  # what it wrote before the timeout
            self.process.kill()
            self.process.wait()
            signals = [line for line in status.splitlines() if line.startswith(("State", "Sig"))]
            pytest.fail(f"the export still ran {timeout} s after the signal; {signals}; its stacks:\n{stderr}")

    def wait_until_held(self) -> None:
        """Read stderr until the export announces it is holding (it waits there for the signal)."""
        while not any(f"holding at {self.hold_at}" in line for line in self.lines):
            line = self.process.stderr.readline()
            assert line, f"the export ended without reaching {self.hold_at}: {''.join(self.lines)}"
            self.lines.append(line)


def test_ctrl_c_exits_130_and_leaves_nothing_half_written(tmp_path):
    export = Export(tmp_path, "check_fp16", "--precision", "fp32,fp16")
    export.wait_until_held()  # fp32 is written; fp16 exists only in memory
    export.process.send_signal(signal.SIGINT)
    stderr = export.wait_for_exit()
    assert export.process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert hidden_temporaries(tmp_path) == []
    assert visible(tmp_path) == ["nin-fp32.json", "nin-fp32.onnx"]  # whole pairs only
    assert run_cli_check(tmp_path / "nin-fp32.onnx") == 0


def run_cli_check(artifact: Path) -> int:
    return subprocess.run([*CLI, "check", str(artifact)], capture_output=True, text=True).returncode


def test_sigkill_leaves_no_loadable_half_and_the_next_run_cleans_up(run_cli, tmp_path):
    export = Export(tmp_path, "int8_written", "--precision", "int8", "--calib-data", "samples", "--calib-size", "8")
    export.wait_until_held()  # the quantizer has written its temporary file, not yet checked or renamed
    export.process.kill()
    export.process.wait(timeout=60)
    assert hidden_temporaries(tmp_path), "SIGKILL skips every cleanup: its temporaries stay behind"
    assert visible(tmp_path) == []  # never an artifact without its manifest and verdict
    result = run_cli("export", "nin", "--precision", "int8", "--calib-data", "samples", "--calib-size", "8",
                     "--out", tmp_path, "--target", "onnx")
    assert result.exit_code == 0, result.output
    assert hidden_temporaries(tmp_path) == []  # the killed run's leftovers were removed under the lock
    assert visible(tmp_path) == ["nin-int8-cpu.json", "nin-int8-cpu.onnx"]  # --target onnx: the cpu form
    assert run_cli("check", tmp_path / "nin-int8-cpu.onnx").exit_code == 0


def _unshare_available() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is missing"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"this machine forbids private tmpfs mounts ({probe.stderr.strip()})"


def on_small_disk(folder: Path, command: str, limits: str = "size=10m") -> subprocess.CompletedProcess:
    """Run `command` with a small tmpfs (10 MiB unless `limits` say otherwise) mounted on `folder` in a private
    mount namespace; stdout ends with `rc=<exit code>` and then what the folder holds."""
    folder.mkdir()
    script = f"mount -t tmpfs -o {limits} tmpfs {folder} && {command}; echo rc=$?; ls -a {folder}"
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600)


needs_unshare = pytest.mark.skipif(_unshare_available() is not None, reason=str(_unshare_available()))


@needs_unshare
def test_a_full_disk_is_exit_2_with_the_path_and_the_room_needed(tmp_path):
    out = tmp_path / "small"  # no room for the 30 MiB model
    run = on_small_disk(out, f"{' '.join(CLI)} export nin --out {out} --target onnx")
    assert "rc=2" in run.stdout, run.stdout + run.stderr
    stderr = " ".join(run.stderr.split())
    assert "no space left on the device of" in stderr and "nin-fp32.onnx" in stderr
    assert "MiB needed" in stderr and "Traceback" not in stderr
    left = run.stdout.split("rc=2", 1)[1].split()
    assert sorted(left) == [".", "..", ".nin-fp32.onnx.lock"]  # nothing half-written


@needs_unshare
def test_a_full_temporary_folder_is_named_as_the_full_one(tmp_path):
    """int8 from an export without fp32 quantizes a temporary fp32 copy (and the quantizer keeps its own) in
    TMPDIR: when that is the full device, the error must not blame the output folder, which has room."""
    temp, out = tmp_path / "small-tmp", tmp_path / "out"
    command = (f"TMPDIR={temp} {' '.join(CLI)} export nin --precision int8 --target onnx --calib-data samples "
               f"--calib-size 8 --out {out}")
    run = on_small_disk(temp, command)
    assert "rc=2" in run.stdout, run.stdout + run.stderr
    stderr = " ".join(run.stderr.split())
    assert f"the temporary folder '{temp}' has" in stderr and "TMPDIR" in stderr, stderr
    assert "Traceback" not in stderr
    assert visible(out) == [] and hidden_temporaries(out) == []


@needs_unshare
@pytest.mark.parametrize("limits", ["size=10m", "size=64m,nr_inodes=6"], ids=["too-small", "inodes-run-out"])
def test_a_full_disk_under_a_triton_repository_is_exit_2_and_leaves_no_model_folder(nin_onnx, tmp_path, limits):
    """Too small: refused before writing. Inodes run out: the space is there, the copy fails halfway (CI once
    ran out of disk here) and the half-made folder is removed."""
    repo = tmp_path / "repo"
    run = on_small_disk(repo, f"{' '.join(CLI)} triton {nin_onnx} --repo {repo}", limits)
    assert "rc=2" in run.stdout, run.stdout + run.stderr
    stderr = " ".join(run.stderr.split())
    assert "no space left on the device of" in stderr and "Traceback" not in stderr, stderr
    assert "MiB needed" in stderr, stderr
    left = set(run.stdout.split("rc=2", 1)[1].split()) - {".", ".."}
    # a repository that is a mount point is its own staging folder: at most its lock file (Triton ignores
    # files), never a folder
    assert left <= {".repo.cnnx-triton.lock"}, left


def test_files_get_the_umask_permissions(run_cli, tmp_path):
    previous = os.umask(0o022)
    try:
        result = run_cli("export", "nin", "--out", tmp_path, "--no-check", "--target", "onnx")
        junit = tmp_path / "parity.xml"
        run_cli("check", tmp_path / "nin-fp32.onnx", "--junit", junit)
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for name in ("nin-fp32.onnx", "nin-fp32.json", "parity.xml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


# --- 6. smaller ones --------------------------------------------------------------------------------------------

def test_nan_outputs_have_no_cosine_or_sqnr_to_show():
    reference = np.random.default_rng(0).standard_normal((3, 1000))
    broken = reference.copy()
    broken[1, 7] = np.nan
    metrics = parity.compare(reference, broken)
    assert metrics["nonfinite"] == 1 and metrics["cosine"] is None and metrics["sqnr_db"] is None
    assert parity.judge(metrics, parity.DEFAULT_THRESHOLDS["fp16"]) == ["1 NaN/Inf values in the output"]

    class Result:  # what parity_table reads of a CheckResult
        artifact, precision, passed = "x.onnx", "fp16", False

    Result.metrics = metrics
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(parity_table([Result]))
    assert "n/a" in console.export_text() and "200.0" not in console.export_text()


def test_markup_in_paths_is_printed_not_interpreted(run_cli, tmp_path):
    out = tmp_path / "a[x] b[/b]"
    result = run_cli("export", "nin", "--out", out, "--target", "onnx", "--no-check")
    assert result.exit_code == 0, result.output
    assert (out / "nin-fp32.onnx").is_file()
    assert "a[x] b[/b]" in result.output  # escaped, not eaten or crashing


def test_printed_commands_are_quoted_and_never_wrapped(run_cli, tmp_path):
    out = tmp_path / ("exports with spaces " + "x" * 150)
    result = run_cli("export", "nin", "--out", out, "--no-check")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    [next_line] = [line for line in lines if line.startswith("next: ")]
    assert next_line == f"next: cnnx check '{out}/nin-fp32.onnx'"  # one line, however long, shell-quoted


@pytest.mark.parametrize("option", ["--junit", "--csv", "--plot"])
def test_a_report_file_that_cannot_be_written_is_refused_before_any_work(run_cli, nin, tmp_path, option):
    """Exit 2 naming the option, before a check or a benchmark runs (--junit under a file was exit 4)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    report = blocker / "report"
    command = (["check", nin, option, report] if option == "--junit" else
               ["bench", nin, "--backends", "onnxruntime", "--batch", "1", option, report])
    result = run_cli(*command)
    assert_refused(result, 2, f"cannot write '{report}'", option)
    assert "checking" not in result.stderr and "measuring" not in result.stderr.lower()


def test_a_report_file_gets_its_folder_created(run_cli, nin, tmp_path):
    result = run_cli("check", nin, "--junit", tmp_path / "new" / "folder" / "report.xml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "folder" / "report.xml").read_text().startswith("<?xml")


@pytest.mark.parametrize("args, phrase", [
    (["export", "nin", "--seed", "-1"], "--seed"),
    (["bench", "nin", "--threads", "-2"], "--threads"),
    (["bench", "nin", "--min-iters", "0"], "--min-iters"),
    (["bench", "nin", "--batch", "1,,2"], "--batch needs comma-separated positive integers"),
    (["predict", "x.onnx", "y.jpg", "--threads", "0"], "--threads"),
])
def test_option_values_out_of_range_are_usage_errors(run_cli, tmp_path, args, phrase):
    assert_refused(run_cli(*args, "--out", tmp_path) if args[0] != "predict" else run_cli(*args), 2, phrase)


def test_precision_names_are_case_insensitive_like_model_names(run_cli, tmp_path):
    result = run_cli("export", "NiN", "--precision", "FP16", "--out", tmp_path, "--no-check", "--target", "onnx")
    assert result.exit_code == 0, result.output
    assert visible(tmp_path) == ["nin-fp16.json", "nin-fp16.onnx"]


NO_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
from cnnx.cli import main
sys.argv = ["cnnx"] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize("command", [["list"], ["export", "nin"]])
def test_inference_only_install_says_what_to_install(command, tmp_path):
    run = subprocess.run([sys.executable, "-c", NO_TORCH, *command, *(["--out", str(tmp_path)] if
                                                                      command[0] == "export" else [])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stderr
    assert "needs the 'torch' package" in run.stderr and "download.pytorch.org/whl/cpu" in run.stderr
    assert "Traceback" not in run.stderr


# --- 4/6. re-exports never replace a good artifact; both int8 forms coexist; caches -----------------------------

def test_a_failing_re_export_keeps_the_good_artifact(run_cli, tmp_path):
    from cnnx.artifacts import sha256_file

    assert run_cli("export", "nin", "--out", tmp_path, "--target", "onnx").exit_code == 0
    good = sha256_file(tmp_path / "nin-fp32.onnx")
    result = run_cli("export", "nin", "--seed", "1", "--out", tmp_path, "--target", "onnx", "--min-sqnr", "500")
    assert_refused(result, 1, "parity check failed", "nin-fp32.failed.onnx", "left untouched")
    assert sha256_file(tmp_path / "nin-fp32.onnx") == good
    assert run_cli("check", tmp_path / "nin-fp32.onnx").exit_code == 0  # still the good pair
    failed = json.loads((tmp_path / "nin-fp32.failed.json").read_text())
    assert failed["artifact"] == "nin-fp32.failed.onnx" and not failed["parity"]["passed"]
    assert failed["weights"]["seed"] == 1


def test_both_int8_forms_are_kept_side_by_side(run_cli, tmp_path):
    for form in ("tensorrt", "cpu"):
        result = run_cli("export", "nin", "--int8", "--calib-data", "samples", "--calib-size", "8",
                         "--int8-target", form, "--out", tmp_path, "--target", "onnx", "--no-check")
        assert result.exit_code == 0, result.output
    assert visible(tmp_path) == ["nin-int8-cpu.json", "nin-int8-cpu.onnx", "nin-int8.json", "nin-int8.onnx"]
    forms = {name: json.loads((tmp_path / name).read_text())["precision_details"]["target"]
             for name in ("nin-int8.json", "nin-int8-cpu.json")}
    assert forms == {"nin-int8.json": "tensorrt", "nin-int8-cpu.json": "cpu"}


def test_a_damaged_or_foreign_calibration_cache_is_rebuilt(tmp_path):
    options = ExportOptions("nin", precisions=("int8",), out_dir=tmp_path, calib_data="samples", calib_size=8,
                            target="onnx", force=True)  # force: the artifact itself is up to date
    [first] = export_model(options)
    cache = Path(first.manifest.precision_details["calibration"]["cache"]["path"])
    real = json.loads(cache.read_text())
    foreign = {**real, "data": {f"another_model/{name}": entry for name, entry in real["data"].items()}}
    for damage, status in ((b"{not json", "is not a readable calibration cache"),
                           (json.dumps(foreign).encode(), "does not fit this graph")):
        cache.write_bytes(damage)
        [again] = export_model(options)
        assert status in again.manifest.precision_details["calibration"]["cache"]["status"]
        assert again.passed and again.manifest.precision_details["accuracy"]["sqnr_db"] == pytest.approx(
            first.manifest.precision_details["accuracy"]["sqnr_db"])


def test_concurrent_exports_into_one_folder_each_leave_a_consistent_pair(tmp_path):
    """Two exports of the same artifact with different weights at once: they take turns on the artifact's
    lock, so whichever finishes last wins whole (file and manifest agree) and neither fails."""
    runs = [subprocess.Popen([*CLI, "export", "nin", "--seed", str(seed), "--out", str(tmp_path), "--target",
                              "onnx"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
    assert visible(tmp_path) == ["nin-fp32.json", "nin-fp32.onnx"] and hidden_temporaries(tmp_path) == []
    assert run_cli_check(tmp_path / "nin-fp32.onnx") == 0  # the manifest's seed rebuilds the file's weights


def test_the_tensorrt_build_command_printed_by_export_is_quoted(run_cli, tmp_path):
    from cnnx.backends.tensorrt import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("TensorRT is usable here: export builds the engine instead of printing the command")
    out = tmp_path / "my exports"
    result = run_cli("export", "nin", "--out", out, "--no-check")
    assert result.exit_code == 0, result.output
    assert f"run: cnnx build '{out}/nin-fp32.onnx'" in result.output
