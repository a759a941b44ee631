"""The mixed search's candidate scoring fanned out over processes gives the serial search's scores."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from edgeport.cli import main
from edgeport.quantize.search import fanout

from fixture_models import TinyCNN, image_data, seeded


@pytest.mark.slow
def test_parallel_candidates_score_exactly_as_serial(tmp_path, capsys, monkeypatch):
    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), torch.randn(1, 3, 16, 16)), tmp_path / "tiny.ts")
    np.savez(tmp_path / "calib.npz", x=image_data(40, (3, 16, 16)))
    reports = {}
    for n in ("1", "2"):
        monkeypatch.setenv(fanout.ENV, n)
        code = main(["convert", str(tmp_path / "tiny.ts"), "--profile", "host", "--quant", "int8", "--diagnose",
                     "--calib", str(tmp_path / "calib.npz"), "--output", str(tmp_path / n), "--runs", "2", "--json"])
        reports[n] = json.loads(capsys.readouterr().out)
        assert code in (0, 1)
    serial, parallel = (r["quantization"]["layers"] for r in (reports["1"], reports["2"]))
    assert len(serial) >= 3, "several candidate units were scored"
    assert [(r["tensor"], r["gain"], r["float_effect"]) for r in serial] == \
        [(r["tensor"], r["gain"], r["float_effect"]) for r in parallel]
    assert reports["1"]["artifact"]["sha256"] == reports["2"]["artifact"]["sha256"]
    fanned = [n for n in reports["2"]["notes"] if "fanned out over 2 processes" in n]
    assert fanned and f"{len(serial)} of {len(serial)} candidates scored in parallel" in fanned[0], reports["2"]["notes"]
    assert not any("fanned out" in n for n in reports["1"]["notes"])


def test_a_dead_scoring_process_falls_back_to_serial(monkeypatch):
    """Broken requests make every child exit without a result: each unit is then scored in-process."""
    monkeypatch.setenv(fanout.ENV, "2")
    calls = []

    def serial(unit):
        calls.append(unit)
        return {"ok": True, "unit": unit}

    units = [["a"], ["b"], ["c"]]
    notes: list[str] = []
    scores = fanout.score_units({"saved_model": os.devnull}, units, 10, serial, notes)
    assert scores == [{"ok": True, "unit": u} for u in units] and calls == units
    assert notes and "0 of 3 candidates scored in parallel, 3 re-scored serially" in notes[0]


def test_workers_from_environment(monkeypatch):
    for value, want in (("3", 3), ("0", 1), ("x", 1)):
        monkeypatch.setenv(fanout.ENV, value)
        assert fanout.workers() == want
    monkeypatch.delenv(fanout.ENV)
    assert fanout.workers() == 1
