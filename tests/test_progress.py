"""Progress on stderr: plain timestamped lines off a terminal, nothing with --quiet, stdout untouched."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from edgeport import progress
from edgeport.cli import build_parser, main
from edgeport.quantize.search import converter_worker as mixed_worker
from edgeport.report.summary import summary_lines

from fixture_models import TinyCNN, seeded

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


@pytest.fixture
def plain(monkeypatch):
    """Plain mode into a buffer, announcing stages at once (the default waits a little)."""
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER_S", 0.0)
    buf = io.StringIO()
    progress.configure(stream=buf, live=False)
    yield buf
    progress.configure(quiet=True)


def _wait_for(predicate, limit_s: float = 30.0) -> None:
    end = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < end:
        time.sleep(0.01)


def test_plain_lines_are_timestamped_and_count(plain):
    with progress.stage("mixed search", "starting", total=4) as st:
        _wait_for(lambda: plain.getvalue())
        st.update("candidate 1", done=1)
        st.update("candidate 1", done=1)  # unchanged: not repeated
        st.update("candidate 2; best so far: 1 float op", done=2)
    lines = plain.getvalue().splitlines()
    assert all(STAMP.match(ln) for ln in lines), lines
    text = [STAMP.sub("", ln) for ln in lines]
    assert text == ["mixed search 0/4: starting", "mixed search 1/4: candidate 1",
                    "mixed search 2/4: candidate 2; best so far: 1 float op", text[-1]]
    assert text[-1].startswith("mixed search: done in ")


def test_a_quick_stage_prints_nothing(monkeypatch):
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER_S", 3600.0)
    buf = io.StringIO()
    progress.configure(stream=buf, live=False)
    try:
        with progress.stage("export", "torchscript -> ONNX") as st:
            st.update("more", done=1, total=2)
        with pytest.raises(RuntimeError), progress.stage("export"):
            raise RuntimeError("failed fast")
    finally:
        progress.configure(quiet=True)
    assert buf.getvalue() == ""


def test_quiet_prints_nothing(monkeypatch):
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER_S", 0.0)
    buf = io.StringIO()
    assert progress.configure(quiet=True, stream=buf) == "off"
    with progress.stage("convert", total=2) as st:
        st.update("fp32", done=1)
        st.tick()
    assert buf.getvalue() == ""


def test_live_bar_on_a_terminal(monkeypatch):
    buf = io.StringIO()
    assert progress.configure(stream=buf, live=True) == "live"
    try:
        with progress.stage("convert", "onnx2tf", total=2) as st:
            st.update("fp16 TFLite", done=1)
    finally:
        progress.configure(quiet=True)
    assert "convert" in buf.getvalue() and "done in" in buf.getvalue()


def test_follow_reads_the_child_status(plain, tmp_path):
    status = tmp_path / "status.json"
    code = ("import sys; from edgeport.progress import write_status\n"
            "write_status(sys.argv[1], phase='variant', variant='fp32', index=0, count=2)\n"
            "write_status(sys.argv[1], phase='variant', variant='int8', index=1, count=2)\n")
    seen = []
    with progress.stage("convert", total=2) as st:
        proc = subprocess.Popen([sys.executable, "-c", code, str(status)])
        assert progress.follow(proc, status, st, seen.append, timeout_s=120) == 0
    assert seen[-1] == {"phase": "variant", "variant": "int8", "index": 1, "count": 2}


def test_mixed_progress_names_the_best_candidate():
    budget = {"reference_accuracy": None, "min_top1_agreement": 0.98, "min_snr_db": None, "accuracy_drop_pp": 1.0}
    curve = [{"float_ops": 0, "ok": True, "top1": 0.90, "accuracy": None, "snr_db": 10.0},
             {"float_ops": 2, "ok": True, "top1": 0.95, "accuracy": None, "snr_db": 14.0}]
    assert mixed_worker._best_text(curve, budget) == "best so far: 0.9500 with 2 float op(s), budget not met yet"
    curve.append({"float_ops": 4, "ok": True, "top1": 0.99, "accuracy": None, "snr_db": 20.0})
    curve.append({"float_ops": 3, "ok": True, "top1": 0.985, "accuracy": None, "snr_db": 19.0})
    assert mixed_worker._best_text(curve, budget) == "best so far: 3 float op(s) meet the budget"


def test_every_command_takes_quiet():
    parser = build_parser()
    for argv in (["convert", "m.pt", "--profile", "host"], ["bench", "m.tflite"], ["inspect", "m.tflite"],
                 ["profiles"], ["doctor"], ["compress", "m.pt", "--recipe", "r.toml", "--data", "d.npz", "--output", "o.ts"]):
        assert parser.parse_args([*argv, "--quiet"]).quiet is True, argv


def test_bench_help_names_every_target(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    top = capsys.readouterr().out
    bench_line = next(ln for ln in top.splitlines() if ln.strip().startswith("bench"))
    assert "adb" in top[top.index(bench_line.strip()):] and "ssh" in top[top.index(bench_line.strip()):]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    assert "adb://SERIAL" in capsys.readouterr().out


def test_requirements_print_yes_or_no_never_a_number():
    report = {"accuracy": {"reference": None, "top1_agreement": None, "cosine_mean": None, "snr_db": None},
              "artifact": {"path": None}, "latency": {"host": {"p50_ms": None}, "simulated": {"p50_ms": None},
                                                      "device": {"p50_ms": None}},
              "quantization": {"mode": "int8"}, "profile": {"name": "host"},
              "verdict": {"passed": False, "checks": [
                  {"name": "full_integer", "value": False, "budget": True, "passed": False, "detail": "2 float op(s)"},
                  {"name": "runs_on_validation_data", "value": True, "budget": True, "passed": True},
                  {"name": "float_conversion_matches_reference", "value": 0.99998, "budget": True, "passed": True},
                  {"name": "model_size_mb", "value": 1.5, "budget": 2.0, "passed": True}]}}
    lines = summary_lines(report)
    assert "    [FAIL] full_integer: no  (2 float op(s))" in lines
    assert "    [ok  ] runs_on_validation_data: yes" in lines
    assert "    [ok  ] float_conversion_matches_reference: yes (min cosine 1)" in lines
    assert "    [ok  ] model_size_mb: 1.5 vs budget 2" in lines
    assert not any("vs budget True" in ln or "vs budget yes" in ln for ln in lines)


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [False, True])
def test_convert_progress_goes_to_stderr_and_json_stays_clean(tmp_path, capsys, monkeypatch, quiet):
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER_S", 0.0)
    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), torch.randn(1, 3, 16, 16)), tmp_path / "m.ts")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32))
    code = main(["convert", str(tmp_path / "m.ts"), "--profile", "host", "--quant", "int8", "--calib", str(tmp_path / "d.npz"),
                 "--output", str(tmp_path / "out"), "--runs", "3", "--json", *(["--quiet"] if quiet else [])])
    captured = capsys.readouterr()
    rep = json.loads(captured.out)  # stdout is the JSON and nothing else
    assert code in (0, 1) and rep["quantization"]["mode"] == "int8"
    if quiet:
        assert captured.err == ""
        return
    lines = captured.err.splitlines()
    assert lines and all(STAMP.match(ln) for ln in lines), captured.err
    text = "\n".join(lines)
    for expected in ("export: torchscript -> ONNX", "export: done in", "convert 1/2: int8", "convert: done in"):
        assert expected in text, text
    assert re.search(r"int8: calibration sample \d+/28", text), text  # 70% of 40 samples calibrate


def test_candidate_count_bound_holds_for_every_outcome():
    """The N in the search's "candidate i/N" is an upper bound the search never exceeds."""
    for n in range(1, 70):
        for target in [*range(1, n + 1), None]:
            calls = []

            def attempt(k, target=target, calls=calls):
                calls.append(k)
                return target is not None and k >= target, [k], b""

            mixed_worker._smallest_k(attempt, n)
            assert len(calls) <= mixed_worker._max_attempts(n), (n, target, calls)
