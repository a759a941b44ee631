"""The verdict is a pure function of (evidence, budgets): every rule tested without a conversion."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgeport.profiles import Budgets
from edgeport.validate.judge import Evidence, judge

BUDGETS = Budgets(latency_p50_ms=10.0, model_size_mb=1.0, accuracy_drop_pp=1.0, min_top1_agreement=0.95, min_snr_db=15.0)
GOOD = Evidence(mode="int8", size_bytes=500_000, drop_pp=0.2, snr_db=30.0, top1_agreement=0.99,
                latency_ms={"simulated": 4.0, "host": 1.0}, xnnpack={"accepted": True})


def _checks(ev: Evidence, budgets: Budgets = BUDGETS) -> dict[str, dict]:
    return {c["name"]: c for c in judge(ev, budgets)["checks"]}


def test_a_model_within_every_budget_passes_and_the_checks_keep_their_order() -> None:
    verdict = judge(GOOD, BUDGETS)
    assert verdict["passed"]
    assert [c["name"] for c in verdict["checks"]] == [
        "builtin_ops_only", "full_integer", "float_conversion_matches_reference", "runs_under_xnnpack",
        "runs_on_validation_data", "model_size_mb", "accuracy_drop_pp", "snr_db", "latency_p50_ms"]


@pytest.mark.parametrize(("change", "failing"), [
    ({"custom_ops": ("CUSTOM:FlexErf",)}, "builtin_ops_only"),
    ({"float_ops": ("FULLY_CONNECTED#3",)}, "full_integer"),
    ({"float_check": {"matches": False, "cosine_min": 0.5}}, "float_conversion_matches_reference"),
    ({"xnnpack": {"accepted": False, "error": "failed to prepare"}}, "runs_under_xnnpack"),
    ({"ran": False, "run_error": "aborted (SIGABRT)"}, "runs_on_validation_data"),
    ({"nonfinite": (("output", 3),)}, "runs_on_validation_data"),
    ({"size_bytes": 2_000_000}, "model_size_mb"),
    ({"drop_pp": 1.5}, "accuracy_drop_pp"),
    ({"snr_db": 9.0}, "snr_db"),
    ({"latency_ms": {"simulated": 11.0, "host": 1.0}}, "latency_p50_ms"),
    ({"kept_float": ("a", "b"), "kept_float_not_float": ("b",)}, "kept_layers_are_float"),
])
def test_each_rule_fails_its_own_check(change: dict, failing: str) -> None:
    checks = _checks(replace(GOOD, **change))
    assert not checks[failing]["passed"]
    assert [n for n, c in checks.items() if not c["passed"]] == [failing]


def test_full_integer_is_judged_for_int8_only() -> None:
    assert "full_integer" not in _checks(replace(GOOD, mode="fp16", float_ops=("CONV_2D#0",)))


def test_latency_prefers_device_then_simulated_then_host() -> None:
    both = _checks(replace(GOOD, latency_ms={"device": 20.0, "simulated": 1.0, "host": 1.0}, device_target="adb://X"))
    assert both["latency_p50_ms"]["value"] == 20.0 and not both["latency_p50_ms"]["passed"]
    assert "adb://X" in both["latency_p50_ms"]["detail"]
    host_only = _checks(replace(GOOD, latency_ms={"host": 3.0}))["latency_p50_ms"]
    assert host_only["value"] == 3.0 and "host measurement stands in" in host_only["detail"]


def test_an_unmeasured_budgeted_value_fails_never_passes_silently() -> None:
    check = _checks(replace(GOOD, latency_ms={}))["latency_p50_ms"]
    assert not check["passed"] and check["detail"] == "not measured"


def test_without_labels_agreement_is_judged_and_a_dead_run_fails_it() -> None:
    agree = _checks(replace(GOOD, drop_pp=None, top1_agreement=0.90))
    assert not agree["top1_agreement"]["passed"]
    dead = _checks(replace(GOOD, drop_pp=None, top1_agreement=None, snr_db=None, ran=False))
    assert not dead["top1_agreement"]["passed"] and not dead["snr_db"]["passed"]


def test_edgetpu_share_and_no_budget_means_no_check() -> None:
    tpu = _checks(replace(GOOD, edgetpu_share=0.5, edgetpu_first_cpu_op="SOFTMAX"), replace(BUDGETS, min_edgetpu_op_share=0.9))
    assert not tpu["edgetpu_op_share"]["passed"] and "SOFTMAX" in tpu["edgetpu_op_share"]["detail"]
    unbudgeted = _checks(GOOD, Budgets())
    assert set(unbudgeted) == {"builtin_ops_only", "full_integer", "float_conversion_matches_reference",
                               "runs_under_xnnpack", "runs_on_validation_data"}


def test_no_checks_at_all_is_not_a_pass() -> None:
    from edgeport.validate.verdict import decide

    assert decide([None])["passed"] is False


def test_a_divergence_names_the_onnx_node_and_module() -> None:
    where = {"onnx_node": "/blocks.2/Gemm", "op": "Gemm", "pytorch_module": "blocks.2"}
    check = _checks(replace(GOOD, float_check={"matches": False, "cosine_min": 0.2, "first_divergent": where}))
    assert "first divergent ONNX node: /blocks.2/Gemm [Gemm] (PyTorch module blocks.2)" in check["float_conversion_matches_reference"]["detail"]


def test_agreement_is_the_worst_output_s_so_a_broken_second_head_fails() -> None:
    """A detector whose box head is exact and whose score head is noise: report.json's snr_db and
    cosine_mean are the score head's, and the SNR budget fails."""
    from types import SimpleNamespace

    from edgeport.report.build import _accuracy

    rng = np.random.default_rng(0)
    boxes, scores = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
    r = SimpleNamespace(run=SimpleNamespace(outputs=[boxes, rng.standard_normal((8, 3))], delegate="xnnpack"),
                        io=SimpleNamespace(outputs=[SimpleNamespace(name="boxes"), SimpleNamespace(name="scores")]),
                        references=[boxes, scores], data=SimpleNamespace(val=SimpleNamespace(labels=None)))
    acc: dict = {}
    _accuracy(acc, r)
    assert acc["snr_db_output"] == "scores" and acc["snr_db"] < 3 and acc["cosine_mean"] < 0.5
    assert not _checks(replace(GOOD, snr_db=acc["snr_db"]))["snr_db"]["passed"]
