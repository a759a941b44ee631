"""--quant auto's rule on figures alone (quantize/auto.py): accuracy first, then latency, then size, then speed."""

from edgeport.quantize.auto import Candidate, choose, modes_for


def _cand(mode, size, sim, *, fails=(), ran=True, value=1.0):
    return Candidate(mode, size_bytes=size, simulated_p50_ms=sim, ran=ran, failed_checks=tuple(fails),
                     task_metric={"name": "ctc_identical", "value": value, "budget": 0.98, "passed": not fails})


def test_the_smallest_accurate_candidate_wins_and_every_other_says_why():
    cands = [_cand("fp32", 400, 2.0), _cand("fp16", 200, 2.0), _cand("int8", 100, 1.0, fails=("ctc_identical: 0.9",), value=0.9),
             _cand("dynamic", 110, 1.5)]
    pick = choose(cands, latency_budget_ms=10.0)
    assert pick.mode == "dynamic"
    why = {c.mode: c.lost_because for c in cands}
    assert why["int8"].startswith("misses the accuracy budget: ctc_identical")
    assert why["fp16"].startswith("larger than dynamic")
    assert why["dynamic"] is None and pick.chosen


def test_within_the_size_tie_the_faster_candidate_wins():
    cands = [_cand("int8", 100, 3.0), _cand("w8", 103, 1.0)]
    assert choose(cands, None).mode == "w8"
    assert "as small as w8" in cands[0].lost_because


def test_a_candidate_over_the_latency_budget_loses_to_a_larger_one_that_meets_it():
    cands = [_cand("fp16", 200, 5.0), _cand("int16x8", 120, 50.0)]
    pick = choose(cands, latency_budget_ms=20.0)
    assert pick.mode == "fp16"
    assert cands[1].meets_latency is False and "latency budget" in cands[1].lost_because


def test_when_none_meets_latency_the_smallest_accurate_one_is_still_returned():
    cands = [_cand("fp16", 200, 50.0), _cand("int8", 100, 40.0)]
    assert choose(cands, latency_budget_ms=10.0).mode == "int8"


def test_when_nothing_is_accurate_enough_the_most_accurate_is_returned():
    cands = [_cand("int8", 100, 1.0, fails=("ctc_identical: 0.5",), value=0.5),
             _cand("fp16", 200, 2.0, fails=("ctc_identical: 0.97",), value=0.97),
             _cand("dynamic", 0, None, ran=False, fails=("runs_on_validation_data: False",))]
    pick = choose(cands, None)
    assert pick.mode == "fp16"
    assert cands[2].lost_because.startswith("did not run")


def test_skipped_candidates_keep_their_reason():
    cands = [Candidate("int8", skipped="needs calibration data (--calib)"), _cand("fp16", 200, 2.0)]
    assert choose(cands, None).mode == "fp16"
    assert cands[0].lost_because == "not built: needs calibration data (--calib)"


def test_modes_follow_the_profile_and_the_data():
    build, skipped = modes_for(["fp32", "fp16", "int8", "mixed", "w4"], calibrated=False)
    assert build == ["fp32", "fp16", "w4"]
    assert set(skipped) == {"int8", "mixed"}
    build, _ = modes_for(["int8", "mixed"], calibrated=True)
    assert build == ["int8", "mixed"]
