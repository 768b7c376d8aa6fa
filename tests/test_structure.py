"""The shape of the code: no import cycles in src/cnnx, each backend, precision and Q/DQ form named once, one
naming function, typed manifests, and the Python export use case doing exactly what `cnnx export` does."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import cnnx
from cnnx.backends import BACKENDS
from cnnx.errors import UsageError
from cnnx.export.pipeline import ExportOptions, export_model
from cnnx.manifest import FORMAT, OnnxManifest, manifest_path, parse_manifest, read_manifest
from cnnx.precisions import PRECISIONS, Q_DQ_FORMS

SRC = Path(__file__).parents[1] / "src" / "cnnx"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every cnnx module -> the cnnx modules it imports, at any depth of the file (lazy imports count too)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from pkg import sub` imports the submodule pkg.sub when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_in_src():
    graph = import_graph()
    assert "cnnx.cli.export" in graph and "cnnx.checking" in graph["cnnx.cli.export"]  # the scan sees lazy imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def literal_collections(path: Path):
    """(line, the string constants) of every tuple, list, set and dict literal (its keys) in a source file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
            elements = node.keys if isinstance(node, ast.Dict) else node.elts
            yield node.lineno, [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def test_each_backend_is_named_once_in_src():
    """No list of backend names outside the registry: CLI choices, bench, doctor, runtime and triton read it."""
    for path in SRC.rglob("*.py"):
        if path in (SRC / "backends" / "__init__.py", SRC / "artifacts.py"):  # artifacts: Python package names
            continue
        for line, constants in literal_collections(path):
            names = [c for c in constants if c in BACKENDS]
            assert len(names) < 2, f"{path.relative_to(SRC)}:{line} lists backends {names}"


def test_each_precision_and_q_dq_form_is_named_once_in_src():
    """No list of precisions or Q/DQ forms outside the precision registry: export's and bench's precisions, the
    CLI's choices and the parity gates read it (a new precision cannot miss its gate or a choice list)."""
    allowed = {SRC / "precisions.py",
               SRC / "backends" / "__init__.py",  # the backend registry: which precisions each backend does not run
               SRC / "hardware.py"}  # peak compute of the CPU's number formats, not a list of cnnx precisions
    for path in SRC.rglob("*.py"):
        if path in allowed:
            continue
        for line, constants in literal_collections(path):
            for kind, registry in (("precisions", PRECISIONS), ("Q/DQ forms", Q_DQ_FORMS)):
                names = [c for c in constants if c in registry]
                assert len(names) < 2, f"{path.relative_to(SRC)}:{line} lists {kind} {names}"


def backend_switches(source: str):
    """(line, code) of each comparison of something named like a backend with a backend's name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            named = [o.value for o in operands if isinstance(o, ast.Constant) and o.value in BACKENDS]
            others = " ".join(ast.unparse(o) for o in operands if not isinstance(o, ast.Constant))
            if named and "backend" in others:
                yield node.lineno, ast.unparse(node)


def test_no_switch_on_backend_names_outside_the_backends():
    """Issue 20: `artifact_runner` switched on the backend's name, so a backend without its branch was built
    without its options. A backend's differences live in its registry entry and its Runner, nowhere else."""
    assert list(backend_switches('if opts.backend == "tensorrt": pass'))
    for path in SRC.rglob("*.py"):
        if SRC / "backends" in path.parents:
            continue
        for line, code in backend_switches(path.read_text()):
            raise AssertionError(f"{path.relative_to(SRC)}:{line} switches on a backend name: {code}")


def test_every_artifact_backend_implements_the_runner_contract():
    """A backend that opens files has its own `open(path, RunOptions)`; an eager one builds from a module."""
    from cnnx.backends.base import Runner

    for name, backend in BACKENDS.items():
        runner = backend.runner_class()
        assert runner.backend == name
        if backend.runs_artifacts:
            assert runner.open.__func__ is not Runner.open.__func__, f"{name} has no open(path, RunOptions)"
        assert set(backend.modes) <= {"latency", "throughput"} and "latency" in backend.modes


def names_an_artifact(node: ast.JoinedStr) -> bool:
    """An f-string that joins a model and a precision (`f"{model}-{precision}"`) or writes a plan's name."""
    text = ast.unparse(node)
    joins = re.search(r"\{[^}]*model\}-\{[^}]*precision\}", text)
    return bool(joins or re.search(r"-b\{[^}]+\}-\{[^}]+\}\.plan", text))


def test_artifact_plan_and_triton_names_come_from_one_function():
    """Issue 20: the int8 forms once collided on one plan path and one Triton name because three places built
    names; naming.py is now the only one."""
    from cnnx.naming import artifact_stem

    stems = [artifact_stem("nin", p, "cpu") for p in ("fp32", "fp16", "int8")]
    assert stems == ["nin-fp32", "nin-fp16", "nin-int8-cpu"]  # the form names int8 files only
    assert artifact_stem("nin", "int8", "tensorrt") == "nin-int8" and artifact_stem("nin", None) == "nin"
    assert names_an_artifact(ast.parse('f"{manifest.model}-{manifest.precision}"').body[0].value)
    assert names_an_artifact(ast.parse('f"{stem}-b{lo}-{hi}.plan"').body[0].value)
    for path in SRC.rglob("*.py"):
        if path == SRC / "naming.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                assert not names_an_artifact(node), f"{path.relative_to(SRC)}:{node.lineno} names an artifact"


def test_manifest_round_trip_and_refusals(tmp_path):
    artifact = export_model(ExportOptions("nin", out_dir=tmp_path, check=False, target="onnx"))[0].path
    manifest = read_manifest(artifact, OnnxManifest)
    data = json.loads(manifest_path(artifact).read_text())
    assert data["format"] == FORMAT and data["kind"] == "onnx"
    assert parse_manifest(data, "x") == manifest and manifest.to_dict() == data
    assert manifest.input.dims == (3, 224, 224) and manifest.num_classes == 1000
    cases = {
        "another version": {**data, "format": "cnnx-manifest/1"},
        "not a cnnx manifest": {"hello": 1},
        "unknown manifest kind": {**data, "kind": "coreml"},
        "lacks opset": {k: v for k, v in data.items() if k != "opset"},
        "damaged 'opset'": {**data, "opset": "twenty"},
        "'input' entry is damaged": {**data, "input": {"name": "images"}},
        "preprocess": {**data, "preprocess": {"resize": 256}},
    }
    for message, damaged in cases.items():
        with pytest.raises(UsageError, match=message) as err:
            parse_manifest(damaged, "m.json")
        assert "re-export" in err.value.hint


def _comparable(manifest: dict) -> dict:
    """A manifest without what differs between two runs of the same export: times and durations."""
    parity = {k: v for k, v in (manifest.get("parity") or {}).items() if k not in ("seconds", "artifact")}
    return {**{k: v for k, v in manifest.items() if k not in ("created", "timings_s")}, "parity": parity}


def test_python_check_equals_cli_check(run_cli, tmp_path, monkeypatch):
    """Issue 20: `cnnx.check(...)` is the whole check use case (files and models, the temporary export, which
    backend judges); `cnnx check` only parses and renders."""
    monkeypatch.setenv("CNNX_HOME", str(tmp_path / "home"))
    artifact = export_model(ExportOptions("nin", out_dir=tmp_path / "out", target="onnx"))[0].path
    result = run_cli("check", str(artifact), "nin", "--precision", "fp32", "--min-sqnr", "70", "--json")
    assert result.exit_code == 0, result.output
    from_cli = json.loads(result.stdout)["results"]
    from_python = cnnx.check([artifact, "nin"], precisions=("fp32",), thresholds={"min_sqnr_db": 70})
    assert [r["artifact"] for r in from_cli] == [r.artifact for r in from_python]
    for cli_result, py_result in zip(from_cli, from_python):
        assert cli_result["metrics"] == py_result.metrics and cli_result["thresholds"]["min_sqnr_db"] == 70
    failing = cnnx.check([artifact], thresholds={"min_sqnr_db": 1000})
    assert not failing[0].passed and "sqnr_db" in failing[0].failures[0]
    with pytest.raises(UsageError, match="unknown threshold min_snr"):
        cnnx.check([artifact], thresholds={"min_snr": 3})
    with pytest.raises(UsageError, match="nothing to check"):
        cnnx.check([])


def test_python_export_equals_cli_export(run_cli, tmp_path):
    """`export_model(ExportOptions(...))` is the whole use case: the CLI adds nothing but parsing."""
    cli_out, py_out = tmp_path / "cli", tmp_path / "py"
    result = run_cli("export", "nin", "--precision", "fp32,fp16", "--out", cli_out, "--json")
    assert result.exit_code == 0, result.output
    results = export_model(ExportOptions("nin", precisions=("fp32", "fp16"), out_dir=py_out))
    assert [r.engine.target for r in results] == ["auto", "auto"]  # engines are part of the use case too
    for r in results:
        cli_file = cli_out / r.path.name
        assert cli_file.read_bytes() == r.path.read_bytes()
        cli_manifest = json.loads(manifest_path(cli_file).read_text())
        assert _comparable(cli_manifest) == _comparable(r.manifest.to_dict())
    reported = json.loads(result.output)
    assert [a["manifest"]["precision"] for a in reported["artifacts"]] == ["fp32", "fp16"]
