"""`--quant mixed` is never silently dominated: when it is both larger and no faster (simulated) than an
fp16 build of the same float model, the verdict fails `mixed_not_dominated` and recommends fp16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.cli import main
from edgeport.profiles import Budgets
from edgeport.quantize.fp16_compare import Fp16Comparison, dominated
from edgeport.types import file_sha256
from edgeport.validate.judge import Evidence, judge
from edgeport.zoo.linear_heavy import SensitiveMlp

# ------------------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(("size", "ms", "expected"), [
    (2000, 1.10, True),  # larger and slower: fp16 is better on both axes
    (2000, 1.00, True),  # larger, same latency: a tie, and on a tie the smaller model wins
    (2000, 0.99, True),  # 1% faster is inside the simulator's 2% resolution: still a tie
    (2000, 0.95, False),  # larger but really faster: a trade-off, not dominated
    (500, 1.50, False),  # slower but smaller: a trade-off
    (1000, 1.50, False),  # the same size is not larger
])
def test_dominance_rule(size: int, ms: float, expected: bool) -> None:
    assert dominated(size, ms, 1000, 1.0) is expected


def test_unknown_latency_judges_nothing() -> None:
    assert dominated(2000, None, 1000, 1.0) is None and dominated(2000, 1.0, 1000, None) is None


def _cmp(size: int, ms: float) -> Fp16Comparison:
    return Fp16Comparison(mode="mixed", size_bytes=1000, simulated_p50_ms=1.0, artifact_size_bytes=size,
                          artifact_simulated_p50_ms=ms, profile="raspberry-pi-4")


def test_recommendation_says_how_much_smaller_and_faster_fp16_is() -> None:
    assert _cmp(2000, 1.25).recommendation() == "use --quant fp16: 50% smaller and 20% faster (simulated on raspberry-pi-4)"
    assert "as fast within the simulator's 2% resolution" in _cmp(2000, 1.0).recommendation()
    assert _cmp(900, 1.25).recommendation() is None


def _evidence(mode: str, cmp: Fp16Comparison | None) -> Evidence:
    return Evidence(mode=mode, size_bytes=2000,
                    fp16_comparison=None if cmp is None else cmp.to_dict() | {"detail": cmp.detail()})


def test_verdict_fails_a_dominated_mixed_model_and_names_fp16() -> None:
    found = judge(_evidence("mixed", _cmp(2000, 1.25)), Budgets())
    check = next(c for c in found["checks"] if c["name"] == "mixed_not_dominated")
    assert not found["passed"] and not check["passed"]
    assert check["value"] == {"size_vs_fp16": 2.0, "simulated_latency_vs_fp16": 1.25}
    assert "fp16 of the same model: 1,000 B, 1 ms simulated" in check["detail"]
    assert "use --quant fp16: 50% smaller and 20% faster" in check["detail"]


def test_verdict_passes_a_mixed_model_that_wins_on_one_axis() -> None:
    found = judge(_evidence("mixed", _cmp(600, 1.25)), Budgets())
    assert found["passed"] and next(c for c in found["checks"] if c["name"] == "mixed_not_dominated")["passed"]


def test_only_mixed_is_judged_and_only_with_a_comparison() -> None:
    for mode in ("w8", "w4", "int8"):
        assert "mixed_not_dominated" not in {c["name"] for c in judge(_evidence(mode, _cmp(2000, 1.25)), Budgets())["checks"]}
    assert "mixed_not_dominated" not in {c["name"] for c in judge(_evidence("mixed", None), Budgets())["checks"]}
    no_latency = Fp16Comparison("mixed", 1000, None, 2000, 1.0, "raspberry-pi-4")
    assert "mixed_not_dominated" not in {c["name"] for c in judge(_evidence("mixed", no_latency), Budgets())["checks"]}


# ------------------------------------------------------------------------------ real conversions


def _mixed(tmp_path: Path, capsys, outlier: float, profile: str = "raspberry-pi-4") -> tuple[int, dict]:
    kwargs = {"outlier": outlier}
    torch.save(SensitiveMlp(**kwargs).state_dict(), tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    for name in ("calib", "val"):
        np.savez(tmp_path / f"{name}.npz", x=rng.standard_normal((64, 64)).astype(np.float32))
    code = main(["convert", str(tmp_path / "m.pt"), "--model-class", "edgeport.zoo.linear_heavy:SensitiveMlp",
                 "--model-kwargs", json.dumps(kwargs), "--input-shape", "x=1x64", "--calib", str(tmp_path / "calib.npz"),
                 "--val", str(tmp_path / "val.npz"), "--profile", profile, "--quant", "mixed",
                 "--output", str(tmp_path / "o"), "--runs", "3", "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_mixed_that_keeps_every_op_float_is_reported_as_dominated_by_fp16(tmp_path: Path, capsys) -> None:
    """Every layer of SensitiveMlp carries a 1000x outlier channel: int8 breaks each op, the search keeps
    them float, and the float32 result is twice fp16's size and no faster. The run must say so, fail
    the verdict and recommend fp16, and must not swap the artifact behind the user's back."""
    code, rep = _mixed(tmp_path, capsys, outlier=1000.0)
    q = rep["quantization"]
    assert q["mode"] == "mixed" and q["levels"]["float"] > q["levels"]["int8"], q["levels"]
    cmp = q["fp16_comparison"]
    assert cmp["dominated"] is True and cmp["size_bytes"] < rep["artifact"]["size_bytes"]
    assert rep["latency"]["simulated"]["p50_ms"] > cmp["simulated_p50_ms"] * 0.98
    check = next(c for c in rep["verdict"]["checks"] if c["name"] == "mixed_not_dominated")
    assert not check["passed"] and "use --quant fp16" in check["detail"] and "% smaller" in check["detail"]
    assert code == 1 and not rep["verdict"]["passed"]
    assert any(n.startswith("--quant mixed is larger and no faster than fp16") for n in rep["notes"])
    artifact = Path(rep["artifact"]["path"])  # still the mixed model: float32 weights, not fp16
    assert artifact.name.endswith("_mixed.tflite") and file_sha256(artifact) == rep["artifact"]["sha256"]
    assert artifact.stat().st_size > 1.8 * cmp["size_bytes"]


@pytest.mark.slow
def test_mixed_that_quantizes_is_not_dominated(tmp_path: Path, capsys) -> None:
    """The same MLP without outliers: int8 fits, mixed is smaller and faster than fp16, the check passes."""
    code, rep = _mixed(tmp_path, capsys, outlier=1.0)
    q = rep["quantization"]
    assert q["levels"]["int8"] > q["levels"]["float"], q["levels"]
    cmp = q["fp16_comparison"]
    assert cmp["dominated"] is False and rep["artifact"]["size_bytes"] < cmp["size_bytes"]
    assert next(c for c in rep["verdict"]["checks"] if c["name"] == "mixed_not_dominated")["passed"]
    assert code == 0, rep["verdict"]


@pytest.mark.slow
def test_edge_tpu_mixed_gets_no_fp16_comparison(tmp_path: Path, capsys) -> None:
    """fp16 does not run on the Edge TPU: no comparison, no check (a recommendation it cannot follow)."""
    code, rep = _mixed(tmp_path, capsys, outlier=1.0, profile="coral-usb")
    assert "fp16_comparison" not in rep["quantization"]
    assert "mixed_not_dominated" not in {c["name"] for c in rep["verdict"]["checks"]}
