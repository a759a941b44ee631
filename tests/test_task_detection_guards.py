"""detect_task's guards against look-alike shapes (edgeport/tasks/detect_kind.py)."""

import numpy as np

from edgeport.tasks import detect_task
from edgeport.types import TensorSpec


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_a_recognizers_softmax_shaped_like_a_yolov8_head_is_ctc():
    """PP-OCRv4's recognizer ends in softmax [N, 40, 6625]: by shape alone it is [N, 4+C, B≥100]."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 40, 6625)).astype(np.float32)
    logits[..., 0] += 8 * (rng.random((4, 40)) < 0.6)  # the blank wins most steps
    probs = _softmax(logits)
    spec = detect_task([TensorSpec("softmax_11.tmp_0", probs.shape, "float32")], [probs], None)
    assert spec.name == "ctc" and spec.options["blank"] == "0"


def test_a_confident_softmax_classifier_is_not_an_embedding():
    logits = np.zeros((6, 40), np.float32)
    logits[np.arange(6), np.arange(6)] = 12.0  # rows near one-hot: unit L2 norm, but probabilities
    probs = _softmax(logits)
    assert detect_task([TensorSpec("prob", probs.shape, "float32")], [probs], None).name == "classify"


def test_frame_features_with_a_frequent_best_channel_are_not_a_recognizer():
    """A Keras audio model's [N, 12, 6] frame output had one channel best on 30-40% of its frames."""
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(8, 12, 6)).astype(np.float32)
    frames[..., 2] += 0.6  # channel 2 wins often, as a loud band does
    spec = detect_task([TensorSpec("frames", frames.shape, "float32")], [frames], None)
    assert spec.name == "raw" and "no CTC blank" in spec.reason
