"""Faults and reproducibility: full disk, SIGINT, concurrent runs, byte-identical rebuilds, shape fuzzing."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from interruptible import default_sigint

from edgeport.cli import main
from edgeport.errors import InputError
from edgeport.export.onnx_prep import parse_shape

from fixture_models import TinyCNN, image_data, seeded
from stderr_lines import error_lines

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("faults")
    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), torch.randn(1, 3, 16, 16)), d / "tiny.ts")
    np.savez(d / "calib.npz", x=image_data(40, (3, 16, 16)))
    return {"model": d / "tiny.ts", "calib": d / "calib.npz"}


def _argv(tiny, out: Path, quant: str = "int8") -> list[str]:
    return ["convert", str(tiny["model"]), "--profile", "host", "--quant", quant, "--calib", str(tiny["calib"]),
            "--output", str(out), "--runs", "3"]


@given(st.text(max_size=40))
@settings(max_examples=300, deadline=None, database=None)
def test_input_shape_parsing_never_crashes(text):
    try:
        name, shape = parse_shape(text)
    except InputError as exc:
        assert "\n" not in exc.one_line()
        return
    assert all(isinstance(d, int) and d > 0 for d in shape)
    again = parse_shape((f"{name}=" if name else "") + "x".join(map(str, shape)))
    assert again == (name, shape)


@pytest.mark.slow
def test_disk_full_leaves_nothing(tiny, tmp_path, capsys, monkeypatch):
    import edgeport.pipeline as pipeline

    def full(src, dst):
        Path(dst).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "_copy_file", full)
    out = tmp_path / "out"
    code = main(_argv(tiny, out))
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0] and "Traceback" not in err[0]
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{TESTS}:{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.slow
def test_sigint_during_conversion_leaves_nothing(tiny, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgeport", *_argv(tiny, out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True,
                            preexec_fn=default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".edgeport-work-*/convert_*.json")):
        time.sleep(0.2)  # wait until the onnx2tf worker is running
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.startswith("edgeport:")]
    assert proc.returncode == 130, err[-1500:]
    assert lines == ["edgeport: error: interrupted; no partial output was written"]
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.slow
def test_concurrent_runs_into_one_directory(tiny, tmp_path):
    out = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "edgeport", *_argv(tiny, out, q), "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for q in ("int8", "fp16")]
    results = [p.communicate(timeout=900) for p in procs]
    for p, (_stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode in (0, 1), stderr[-1500:]
    for quant in ("int8", "fp16"):
        art = out / f"tiny_{quant}.tflite"
        own = json.loads((out / f"tiny_{quant}.report.json").read_text())
        assert own["quantization"]["mode"] == quant
        assert hashlib.sha256(art.read_bytes()).hexdigest() == own["artifact"]["sha256"]
    latest = json.loads((out / "report.json").read_text())
    assert latest["quantization"]["mode"] in ("int8", "fp16")
    assert not list(out.glob(".*")), "no temp files or work dirs are left"


@pytest.mark.slow
def test_same_inputs_give_identical_model_and_metrics(tiny, tmp_path, capsys):
    reports = []
    for run in ("a", "b"):
        assert main([*_argv(tiny, tmp_path / run), "--json"]) in (0, 1)
        reports.append(json.loads(capsys.readouterr().out))
    a, b = reports
    assert a["artifact"]["sha256"] == b["artifact"]["sha256"]
    for key in ("cosine_mean", "snr_db", "top1_agreement"):
        assert a["accuracy"][key] == b["accuracy"][key]
    assert a["data"]["calibration"]["sha256"] == b["data"]["calibration"]["sha256"]
    assert a["options"]["calib"] == str(tiny["calib"]) and a["options"]["quant"] == "int8"


@pytest.mark.slow
def test_unreachable_device_is_exit_3_with_one_line_and_no_output(tiny, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: connection refused
    out = tmp_path / "out"
    code = main([*_argv(tiny, out), "--target", f"ssh://nobody@127.0.0.1:{port}"])
    err = error_lines(capsys.readouterr().err)
    assert code == 3 and len(err) == 1 and err[0].startswith("edgeport: error: "), err
    assert "127.0.0.1" in err[0] and "Traceback" not in err[0]
    assert not out.exists() or not any(out.iterdir())
