"""The verdict judges the task's metric (validate/judge.py _task): ctc/detect/embed/segment replace the raw SNR."""

from edgeport.profiles import Budgets
from edgeport.validate.judge import Evidence, judge

BUDGETS = Budgets(model_size_mb=10.0, min_snr_db=15.0, min_top1_agreement=0.98)


def _checks(**task):
    ev = Evidence(mode="int8", size_bytes=1000, snr_db=30.0, task=task or None)
    found = judge(ev, BUDGETS)
    return found["passed"], {c["name"]: c for c in found["checks"]}


def test_a_ctc_model_with_good_snr_but_changed_strings_fails():
    passed, checks = _checks(task="ctc", metric="ctc_identical", value=0.94, summary="ctc_identical 0.94")
    assert not passed
    assert checks["ctc_identical"]["passed"] is False and checks["ctc_identical"]["budget"] == 0.98
    assert "snr_db" not in checks  # the task metric is the accuracy check, not SNR


def test_a_detector_needs_recall_and_precision():
    passed, checks = _checks(task="detect", metric="detect_recall", value=0.99, details={"precision": 0.60})
    assert not passed
    assert checks["detect_recall"]["passed"] and not checks["detect_precision"]["passed"]


def test_an_embedding_is_not_judged_by_argmax_agreement():
    ev = Evidence(mode="int8", size_bytes=1000, snr_db=30.0, top1_agreement=0.75,
                  task={"task": "embed", "metric": "embed_cosine_min", "value": 0.9997})
    found = judge(ev, BUDGETS)
    assert found["passed"] and "top1_agreement" not in {c["name"] for c in found["checks"]}


def test_the_profile_floor_decides_and_a_met_floor_passes():
    passed, checks = _checks(task="embed", metric="embed_cosine_min", value=0.995)
    assert passed and checks["embed_cosine_min"]["budget"] == 0.99
    loose = Budgets(model_size_mb=10.0, min_snr_db=15.0, min_embed_cosine=0.999)
    assert not judge(Evidence(mode="int8", size_bytes=1000, snr_db=30.0,
                              task={"task": "embed", "metric": "embed_cosine_min", "value": 0.995}), loose)["passed"]


def test_classify_and_raw_keep_todays_checks():
    for name in ("classify", "raw"):
        passed, checks = _checks(task=name, metric="top1_agreement", value=0.5)
        assert "snr_db" in checks and "top1_agreement" not in checks
        assert passed  # SNR 30 dB meets 15; classify's top-1 comes from the accuracy figures, not the task dict


def test_a_model_that_did_not_run_fails_its_task_check():
    ev = Evidence(mode="int8", size_bytes=1000, ran=False, run_error="DIV failed",
                  task={"task": "segment", "metric": "segment_miou", "value": 0.99})
    checks = {c["name"]: c for c in judge(ev, BUDGETS)["checks"]}
    assert checks["segment_miou"]["passed"] is False
