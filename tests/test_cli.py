"""The zoo commands: list, info, unknown names, version."""

import json
import subprocess
import sys

import cnnx


def test_list_shows_every_model_with_reference_numbers(run_cli):
    result = run_cli("list")
    assert result.exit_code == 0
    for spec in cnnx.list_models():
        assert spec.name in result.output
    assert "25.56 M" in result.output and "4.089" in result.output  # resnet50


def test_list_json_is_complete(run_cli):
    rows = json.loads(run_cli("list", "--json").output)
    by_name = {r["name"]: r for r in rows}
    assert len(rows) == len(cnnx.list_models()) >= 22
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["googlenet"]["aux_params"] > 0
    assert by_name["inception-v3"]["input_shape"] == [3, 299, 299]
    assert by_name["inception-resnet-v2"]["checkpoint"] == "timm inception_resnet_v2"


def test_info_lists_stage_shapes(run_cli):
    result = run_cli("info", "resnet50")
    assert result.exit_code == 0
    assert "layer4" in result.output and "1x2048x7x7" in result.output
    data = json.loads(run_cli("info", "vgg16", "--json").output)
    shapes = {s["name"]: s["shape"] for s in data["stages"]}
    assert [1, 512, 7, 7] in shapes.values() and data["params"] == 138_357_544


def test_unknown_model_exits_2_with_suggestions_and_no_traceback(run_cli):
    result = run_cli("info", "resnet5")
    assert result.exit_code == 2
    assert "unknown model 'resnet5'" in result.stderr and "resnet50" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_version(run_cli):
    result = run_cli("--version")
    assert result.exit_code == 0 and cnnx.__version__ in result.output


def test_debug_adds_the_traceback_and_keeps_the_exit_code():
    """Scripts branch on the exit code; --debug must not turn a usage error (2) into Python's 1."""
    run = subprocess.run([sys.executable, "-m", "cnnx", "--debug", "info", "resnet5"], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert "Traceback" in run.stderr and "unknown model 'resnet5'" in run.stderr
