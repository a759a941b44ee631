"""The runs_under_xnnpack check and its detail, from recorded diagnosis rows (no conversion)."""

from __future__ import annotations

from edgeport.validate import xnnpack

REFUSED = {
    "accepted": False, "error": "the TFLite runtime failed: RuntimeError: failed to create XNNPACK runtime",
    "rejected": [{"index": 5, "op": "CONV_2D", "tensor": "t5", "requant_scale": 7.9e35, "onnx_node": "/layer1/layer1.0/conv1/Conv",
                  "pytorch_module": "layer1.0.conv1", "reason": "requantization scale 7.9e+35 >= 256 (input scale 1.33e+36)"}],
    "causes": [{"index": 3, "op": "PADV2", "tensor": "t3", "onnx_node": "/maxpool/MaxPool", "pytorch_module": "maxpool",
                "reason": "output scale 1.33e+36 per int8 step; pad value -3.4e+38 entered the calibration range"}],
}


def test_refused_model_fails_and_names_modules():
    check = xnnpack.check(REFUSED)
    assert check is not None and not check.passed and check.value is False
    assert "layer1.0.conv1" in check.detail and "maxpool" in check.detail and "PADV2" in check.detail


def test_accepted_model_passes():
    check = xnnpack.check({"accepted": True, "delegate": "xnnpack"})
    assert check is not None and check.passed and check.detail == ""


def test_model_that_never_ran_gets_no_xnnpack_check():
    assert xnnpack.check({"accepted": None, "delegate": "default"}) is None


def test_refusal_without_known_cause_keeps_the_runtime_message():
    check = xnnpack.check({"accepted": False, "error": "failed to create XNNPACK runtime", "rejected": [], "causes": []})
    assert not check.passed and "failed to create XNNPACK runtime" in check.detail


def test_failure_message_recognised():
    assert xnnpack.is_xnnpack_failure("RuntimeError: failed to create XNNPACK runtimeNode number 9 (TfLiteXNNPackDelegate) failed to prepare.")
    assert not xnnpack.is_xnnpack_failure("the TFLite runtime crashed (SIGFPE)")
    assert not xnnpack.is_xnnpack_failure(None)
