"""Task metrics on real conversions of the task fixtures (edgeport/zoo/task_models.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeport.cli import main
from edgeport.zoo import task_models

pytestmark = pytest.mark.slow
PROFILE = "raspberry-pi-4"


def _convert(tmp_path: Path, name: str, quant: str, *extra: str) -> dict:
    import json

    args = task_models.write(name, tmp_path / name, calib=48, val=24)
    out = tmp_path / f"{name}_{quant}"
    code = main(["convert", *args, "--profile", PROFILE, "--quant", quant, "--output", str(out), "--runs", "2",
                 "--quiet", *extra])
    report = json.loads((out / "report.json").read_text())
    assert code == (0 if report["verdict"]["passed"] else 1)
    return report


def _checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["verdict"]["checks"]}


def test_a_crnn_is_judged_by_its_decoded_strings(tmp_path):
    rep = _convert(tmp_path, "crnn_ctc", "int8")
    task = rep["accuracy"]["task"]
    assert (task["task"], task["detected"], task["options"]) == ("ctc", True, {"blank": "0"})
    checks = _checks(rep)
    assert checks["ctc_identical"]["value"] == task["value"] >= 0.98 and "snr_db" not in checks
    assert task["details"]["sequences"] == 24


def test_int8_of_a_concatenated_yolo_head_fails_on_its_boxes_though_its_snr_passes(tmp_path):
    """One output tensor holds pixel coordinates (0..64) and scores (0..1): int8's one scale per tensor
    leaves the scores a handful of levels, so thresholding and NMS keep other boxes. SNR stays high."""
    rep = _convert(tmp_path, "yolo_detector", "int8")
    assert rep["accuracy"]["task"]["task"] == "detect" and rep["accuracy"]["task"]["options"] == {"layout": "yolo"}
    checks = _checks(rep)
    assert rep["accuracy"]["snr_db"] >= rep["profile"]["budgets"]["min_snr_db"]
    assert not checks["detect_recall"]["passed"] and not rep["verdict"]["passed"]


def test_auto_keeps_a_precision_whose_boxes_hold(tmp_path):
    rep = _convert(tmp_path, "yolo_detector", "auto")
    rows = {c["mode"]: c for c in rep["quant_auto"]["candidates"]}
    assert not rows["int8"]["meets_task"] and rows["int8"]["lost_because"].startswith("misses the accuracy budget")
    chosen = rows[rep["quant_auto"]["chosen"]]
    assert chosen["meets_task"] and rep["verdict"]["passed"]
    assert _checks(rep)["detect_recall"]["value"] >= 0.95
    # the by-hand comparison: nothing that meets the budget is smaller than the chosen file (5% tie)
    assert all(r["size_bytes"] * 1.05 >= chosen["size_bytes"] for r in rows.values() if r["meets_task"])


def test_an_embedding_is_judged_by_cosine_not_argmax(tmp_path):
    rep = _convert(tmp_path, "embedding_net", "int8")
    checks = _checks(rep)
    assert rep["accuracy"]["task"]["task"] == "embed"
    assert "top1_agreement" not in checks and checks["embed_cosine_min"]["value"] >= 0.99
    assert 0.0 <= rep["accuracy"]["task"]["details"]["nn_identity"] <= 1.0


def test_a_segmenter_given_with_task_is_judged_by_miou(tmp_path):
    rep = _convert(tmp_path, "tiny_segmenter", "int8", "--task", "segment")
    task = rep["accuracy"]["task"]
    assert (task["task"], task["detected"], task["metric"]) == ("segment", False, "segment_miou")
    assert _checks(rep)["segment_miou"]["value"] == pytest.approx(round(task["value"], 4))
