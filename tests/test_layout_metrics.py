from __future__ import annotations

import numpy as np
import pytest

from edgeport.export.layout import apply, candidate_perms, input_perm, output_perm, undo
from edgeport.validate import metrics, verdict


def test_layout_roundtrip_and_ambiguity():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    perm = input_perm((1, 3, 4, 5), (1, 4, 5, 3), moved_by_default=True)
    assert perm == (0, 2, 3, 1)
    assert np.array_equal(undo(apply(x, perm), perm), x)
    assert candidate_perms((1, 8, 8, 8), (1, 8, 8, 8)) == [None, (0, 2, 3, 1)]
    assert input_perm((1, 8, 8, 8), (1, 8, 8, 8), moved_by_default=True) == (0, 2, 3, 1)
    assert input_perm((1, 8), (1, 8), moved_by_default=True) is None
    with pytest.raises(ValueError):
        input_perm((1, 3, 4, 5), (1, 3, 5, 5), moved_by_default=True)


def test_output_perm_settles_ties_by_value():
    ref = np.random.default_rng(0).standard_normal((2, 4, 4, 4)).astype(np.float32)
    assert output_perm(ref.shape, ref.copy(), ref) is None
    nhwc = ref.transpose(0, 2, 3, 1).copy()
    assert output_perm(ref.shape, nhwc, ref) == (0, 2, 3, 1)


def test_metrics_flag_nonfinite_and_agreement():
    ref = np.eye(4, dtype=np.float32)
    good = metrics.compare_output("y", ref, ref + 0.01)
    assert good.top1_agreement == 1.0 and good.cosine_mean > 0.99 and good.snr_db > 20
    bad = ref.copy()
    bad[0, 0] = np.nan
    m = metrics.compare_output("y", ref, bad)
    assert m.nonfinite == 1 and m.top1_agreement == 0.0 and not m.cosine_mean == m.cosine_mean
    assert metrics.label_accuracy(ref, np.array([0, 1, 2, 0])) == 0.75


def test_an_all_zero_reference_output_is_judged_by_its_absolute_error():
    """Worst-output SNR judges every output, so a zero output (an unused head) must not be -inf dB for
    float rounding, nor pass when it is really wrong."""
    zero = np.zeros((4, 3), dtype=np.float32)
    assert metrics.compare_output("z", zero, zero + 1e-7).snr_db == float("inf")
    assert metrics.compare_output("z", zero, zero + 0.1).snr_db == float("-inf")


def test_verdict_never_passes_unmeasured():
    assert verdict.at_most("x", None, 1.0).passed is False
    assert verdict.at_most("x", float("nan"), 1.0).passed is False
    assert verdict.at_most("x", 2.0, None) is None
    result = verdict.decide([verdict.at_most("a", 0.5, 1.0), verdict.at_least("b", 0.2, 0.9)])
    assert result["passed"] is False and [c["passed"] for c in result["checks"]] == [True, False]
    assert verdict.decide([])["passed"] is False
