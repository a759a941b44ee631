"""`edgeport sweep`: plan validation (exit 2, one line naming the entry), resume keys, the results table.

No conversions here (see test_sweep_e2e.py for real sweeps on the local pool and on Ray).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgeport.cli import main
from edgeport.sweep import table
from edgeport.sweep.cell import finished_record, install
from edgeport.sweep.executors import ship_inputs
from edgeport.sweep.plan import load_plan, with_keys

GOOD = """
profiles = ["host"]
modes = ["fp32", "int8"]
[sweep]
runs = 3
[[models]]
checkpoint = "m.ts"
calib = "calib.npz"
"""


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    (tmp_path / "m.ts").write_bytes(b"not really a model; plans are checked without loading it")
    np.savez(tmp_path / "calib.npz", x=np.zeros((4, 3, 8, 8), np.float32))
    (tmp_path / "plan.toml").write_text(GOOD)
    return tmp_path


def _sweep_error(plan: Path, capsys) -> str:
    code = main(["sweep", str(plan), "-o", str(plan.parent / "out")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("edgeport: error: ") and "Traceback" not in err[0], err
    assert not (plan.parent / "out").exists(), "a bad plan writes nothing"
    return err[0]


@pytest.mark.parametrize("edit, names", [
    (lambda t: t.replace('checkpoint = "m.ts"', 'checkpoint = "missing.ts"'), ["models[0].checkpoint", "missing.ts"]),
    (lambda t: t.replace('calib = "calib.npz"', 'calib = "nope.npz"'), ["models[0] (m).calib", "nope.npz"]),
    (lambda t: t.replace('calib = "calib.npz"', 'calib = "builtin:nosuch"'), ["models[0] (m).calib", "builtin:nosuch"]),
    (lambda t: t.replace('calib = "calib.npz"', ''), ["models[0] (m).calib", "int8 needs calibration"]),
    (lambda t: t.replace('["host"]', '["hots"]'), ["models[0] (m).profiles", "hots", "did you mean 'host'"]),
    (lambda t: t.replace('"int8"]', '"int4"]'), ["models[0] (m).modes", "int4"]),
    (lambda t: t.replace('["host"]', '["coral-usb"]'), ["models[0] (m).modes", "fp32"]),
    (lambda t: t + 'colour = "red"\n', ["models[0].colour", "not a model option"]),
    (lambda t: t.replace("runs = 3", "runs = -1"), ["sweep.runs"]),
    (lambda t: t.replace("runs = 3", "runs = 3\nworkrs = 2"), ["sweep.workrs"]),
    (lambda t: t + '[[models]]\ncheckpoint = "m.ts"\ncalib = "calib.npz"\n', ["models[1].name", "'m' is used"]),
    (lambda t: t + 'input_shapes = ["1xAx3"]\n', ["models[0] (m).input_shapes"]),
    (lambda t: t.replace("[[models]]", "[[modles]]"), ["modles", "not a plan key"]),
    (lambda t: t + 'state = ["state"]\n', ["models[0] (m).state", "IN=OUT"]),
    (lambda t: "profiles = [\n", ["not valid TOML"]),
])
def test_bad_plan_is_exit_2_with_one_line_naming_the_entry(plan_dir, capsys, edit, names):
    plan = plan_dir / "plan.toml"
    plan.write_text(edit(GOOD))
    line = _sweep_error(plan, capsys)
    for name in names:
        assert name in line, line


def test_missing_plan_and_bad_workers_are_exit_2(plan_dir, capsys):
    _sweep_error(plan_dir / "absent.toml", capsys)
    code = main(["sweep", str(plan_dir / "plan.toml"), "--workers", "0"])
    assert code == 2 and "--workers 0" in capsys.readouterr().err


def test_cells_are_the_cross_product_with_per_model_overrides(plan_dir):
    text = GOOD + '[[models]]\nname = "b"\ncheckpoint = "m.ts"\nprofiles = ["raspberry-pi-4", "pixel-7"]\nmodes = ["fp16"]\n'
    (plan_dir / "plan.toml").write_text(text)
    plan = load_plan(plan_dir / "plan.toml")
    assert [c.id for c in plan.cells] == ["m__host__fp32", "m__host__int8", "b__raspberry-pi-4__fp16", "b__pixel-7__fp16"]
    int8 = plan.cells[1]
    assert int8.request["quant"] == "int8" and int8.request["runs"] == 3
    assert Path(int8.request["calib"]) == plan_dir / "calib.npz", "paths are relative to the plan file"
    assert plan.output == plan_dir / "edgeport-sweep" or plan.output == Path("edgeport-sweep")


def test_state_pairs_reach_the_cells_request(plan_dir):
    (plan_dir / "plan.toml").write_text(GOOD + 'state = "state=stateN"\n')
    plan = load_plan(plan_dir / "plan.toml")
    assert all(c.request["states"] == ["state=stateN"] for c in plan.cells)


def test_key_changes_with_each_input_and_only_for_the_cells_that_use_it(plan_dir):
    plan_path = plan_dir / "plan.toml"
    before = {c.id: c.key for c in with_keys(load_plan(plan_path)).cells}
    assert len(set(before.values())) == 2, "fp32 and int8 cells have different keys"
    assert before == {c.id: c.key for c in with_keys(load_plan(plan_path)).cells}, "keys are stable"
    np.savez(plan_dir / "calib.npz", x=np.ones((4, 3, 8, 8), np.float32))
    after_data = {c.id: c.key for c in with_keys(load_plan(plan_path)).cells}
    assert all(after_data[k] != before[k] for k in before), "calibration data takes part in every cell's key"
    (plan_dir / "m.ts").write_bytes(b"other weights")
    after_ckpt = {c.id: c.key for c in with_keys(load_plan(plan_path)).cells}
    assert all(after_ckpt[k] != after_data[k] for k in before)
    plan_path.write_text(GOOD.replace("runs = 3", "runs = 4"))
    after_opts = {c.id: c.key for c in with_keys(load_plan(plan_path)).cells}
    assert all(after_opts[k] != after_ckpt[k] for k in before), "options take part in the key"


def test_install_is_all_or_nothing_and_only_matching_keys_count(tmp_path):
    root = tmp_path / "cells"
    install(root, "a", {"a.tflite": b"v1", "report.json": b"{}"}, {"key": "k1", "status": "passed"})
    assert finished_record(root, "a", "k1")["status"] == "passed"
    assert finished_record(root, "a", "k2") is None, "changed inputs: the old result does not count"
    install(root, "a", {"a.tflite": b"v2"}, {"key": "k2", "status": "crashed", "reason": "SIGSEGV"})
    assert (root / "a" / "a.tflite").read_bytes() == b"v2" and not (root / "a" / "report.json").exists()
    assert finished_record(root, "a", "k2") is None, "a crashed cell runs again next time"
    assert sorted(p.name for p in root.iterdir()) == ["a"], "no staging folders left"


def test_ship_inputs_carries_files_and_folders_but_not_builtin_data(tmp_path):
    (tmp_path / "m.ts").write_bytes(b"w")
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    (tmp_path / "imgs" / "cat" / "1.png").write_bytes(b"png")
    files, names = ship_inputs({"checkpoint": str(tmp_path / "m.ts"), "calib": str(tmp_path / "imgs"), "val": "builtin:digits"})
    assert names == {"checkpoint": "checkpoint/m.ts", "calib": "calib/imgs"}
    assert files == {"checkpoint/m.ts": b"w", "calib/imgs/cat/1.png": b"png"}


def test_results_table_escapes_untrusted_text_and_links_reports():
    cells = [{"id": "x__host__int8", "model": "<script>alert(1)</script>", "profile": "host", "mode": "int8",
              "status": "crashed", "reason": "convert process killed by SIGSEGV; last output: a|b <b>", "report_link": None},
             {"id": "y__host__fp32", "model": "y", "profile": "host", "mode": "fp32", "status": "passed",
              "report_link": "cells/y__host__fp32/report.html",
              "summary": {"size_bytes": 2048, "accuracy": 0.5, "failed_checks": []}}]
    data = {"plan": "p.toml", "executor": "local", "counts": "2 cells", "cells": cells}
    html = table.html(data)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;" in html
    assert "href='cells/y__host__fp32/report.html'" in html
    md = table.markdown(data)
    row = next(ln for ln in md.splitlines() if ln.startswith("| x__"))
    assert "a\\|b" in row and len(re.findall(r"(?<!\\)\|", row)) == len(table.COLUMNS) + 2, row
    assert "[report](cells/y__host__fp32/report.html)" in md and "| 2 |" in md
    json.dumps(data)


# ------------------------------------------------------------- one option table for convert and plans


def _convert_parser():
    from edgeport.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices["convert"]


def test_every_convert_option_is_taken_by_plans_or_excluded_with_a_reason():
    from edgeport.convert_options import API_ONLY_FIELDS, COMMON_EXCLUDED, OPTIONS
    from edgeport.pipeline import ConvertRequest
    from edgeport.sweep.plan import MODEL_KEYS

    by_dest = {o.dest: o for o in OPTIONS}
    missing = []
    for action in _convert_parser()._actions:
        opt = by_dest.get(action.dest)
        if opt is None:
            if not COMMON_EXCLUDED.get(action.dest):
                missing.append(action.dest)
        elif not (opt.plan in MODEL_KEYS or opt.excluded):
            missing.append(action.dest)
    assert not missing, f"convert options a sweep plan neither takes nor excludes: {missing}"
    filled = {o.field for o in OPTIONS}
    fields = {f.name for f in dataclasses.fields(ConvertRequest)}
    assert fields - filled == set(API_ONLY_FIELDS), "every ConvertRequest field has a flag or a reason not to"
    assert {o.plan for o in OPTIONS if o.plan} >= {"const", "exporter", "mixed_search", "diagnose", "targets",
                                                    "max_calib_samples", "max_val_samples", "task", "state", "weights"}


ALL_KEYS = """
profiles = ["host"]
modes = ["int8"]
exporter = "onnx2tf"          # a top-level default every model inherits
const = { sr = 16000 }
[sweep]
runs = 3
[[models]]
checkpoint = "m.ts"
calib = "calib.npz"
val = "calib.npz"
model_class = "pkg.mod:Net"
model_kwargs = { width = 2 }
weights = "raw"
input_shapes = ["x=1x3x8x8"]
trust_pickle = true
opset = 13
state = ["state=stateN"]
runs = 7
max_calib_samples = 12
max_val_samples = 9
preprocess = { resize = "8", scale = "1/255" }
keep_work = true
mixed_search = "aeq"
task = "classify"
diagnose = true
targets = ["sim"]
benchmark_binary = "bin/benchmark_model"
ssh_options = ["-oPort=2222"]
"""
ALL_ARGV = ["convert", "m.ts", "--profile", "host", "--quant", "int8", "--calib", "calib.npz", "--val", "calib.npz",
            "--model-class", "pkg.mod:Net", "--model-kwargs", '{"width": 2}', "--weights", "raw",
            "--input-shape", "x=1x3x8x8", "--trust-pickle", "--opset", "13", "--state", "state=stateN", "--runs", "7",
            "--max-calib-samples", "12", "--max-val-samples", "9", "--preprocess", "resize=8", "--preprocess", "scale=1/255",
            "--keep-work", "--mixed-search", "aeq", "--task", "classify", "--diagnose", "--target", "sim",
            "--benchmark-binary", "bin/benchmark_model", "--ssh-option=-oPort=2222", "--exporter", "onnx2tf",
            "--const", "sr=16000"]


def test_a_plan_and_the_command_line_make_the_same_request(plan_dir, monkeypatch):
    from edgeport.convert_options import make_request, request_from_args

    (plan_dir / "plan.toml").write_text(ALL_KEYS)
    cell = load_plan(plan_dir / "plan.toml").cells[0]
    from_plan = make_request(cell.request)
    monkeypatch.chdir(plan_dir)
    from_cli = request_from_args(_convert_parser().parse_args(ALL_ARGV[1:]))
    differ = {f.name for f in dataclasses.fields(from_cli)
              if getattr(from_cli, f.name) != getattr(from_plan, f.name) and f.name not in ("output",)}
    # paths: the plan resolves them against its folder, the command line leaves them as typed
    assert differ == {"checkpoint", "calib", "val", "benchmark_binary"}, differ
    for name in differ:
        assert Path(str(getattr(from_plan, name))) == plan_dir / str(getattr(from_cli, name))
    assert from_plan.constants == ("sr=16000",) and from_plan.exporter == "onnx2tf" and from_plan.weights == "raw"


@pytest.mark.parametrize("extra, names", [
    ('const = ["sr"]\n', ["models[0] (m).const", "NAME=VALUE"]),
    ('exporter = "tflite"\n', ["models[0] (m).exporter", "tflite"]),
    ('mixed_search = "best"\n', ["models[0] (m).mixed_search", "best"]),
    ('diagnose = "yes"\n', ["models[0] (m).diagnose", "true or false"]),
    ('targets = ["ftp://x"]\n', ["models[0] (m).targets", "ftp://x"]),
    ("max_calib_samples = 0\n", ["models[0] (m).max_calib_samples", "at least 1"]),
    ('weights = "best"\n', ["models[0] (m).weights", "best"]),
    ("opset = 3\n", ["models[0] (m).opset", "at least"]),
    ('task = 3\n', ["models[0] (m).task", "must be a string"]),
    ('model_class = "nocolon"\n', ["models[0] (m).model_class", "module:Class"]),
])
def test_new_plan_keys_are_checked_as_their_flags(plan_dir, capsys, extra, names):
    plan = plan_dir / "plan.toml"
    plan.write_text(GOOD + extra)
    line = _sweep_error(plan, capsys)
    for name in names:
        assert name in line, line


def test_a_bad_top_level_default_names_the_top_level(plan_dir, capsys):
    plan = plan_dir / "plan.toml"
    plan.write_text('exporter = "tflite"\n' + GOOD)
    line = _sweep_error(plan, capsys)
    assert "models[0] (m).exporter (the plan's top-level default)" in line, line


def test_per_model_values_override_top_level_defaults(plan_dir):
    text = 'exporter = "litert-torch"\nconst = ["sr=8000"]\n' + GOOD + (
        '[[models]]\nname = "b"\ncheckpoint = "m.ts"\nmodes = ["fp32"]\nexporter = "onnx2tf"\nconst = { sr = 16000 }\n')
    (plan_dir / "plan.toml").write_text(text)
    cells = {c.id: c.request for c in load_plan(plan_dir / "plan.toml").cells}
    assert cells["m__host__int8"]["exporter"] == "litert-torch" and cells["m__host__int8"]["constants"] == ["sr=8000"]
    assert cells["b__host__fp32"]["exporter"] == "onnx2tf" and cells["b__host__fp32"]["constants"] == ["sr=16000"]
