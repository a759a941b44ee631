"""Which task a model does, guessed from its float outputs and the labels, with the reason in one line.

The rules, first match wins (the first output is the one judged, as labels score it):
1. Task labels name the task: `text`/`tokens` -> ctc, `boxes` -> detect, `masks` -> segment.
2. [N, C] with one class id per sample -> classify (today's classifiers, the digits demo).
3. One [N, T, C] output whose steps are (log-)probabilities over the last axis -> ctc, before any
   detection guess (PP-OCRv4's softmax [N, 40, 6625] has the shape of a YOLOv8 head).
4. A dense detection head -> detect: one [N, B, 5+C] (yolo) or [N, 4+C, B] (yolov8) output with
   B >= 100 boxes, or a boxes [N, B, 4] + scores [N, B, C] pair.
5. [N, T, C] with T > 1 and C >= 3 whose most frequent best class (the blank) wins >= 30% of the
   steps -> ctc with that blank. Without that signature -> raw.
6. [N, D] with unit-norm rows (D >= 8), or D >= 32 and an output named like an embedding, and rows
   that are not probabilities (a confident softmax has unit norm too) -> embed. Other [N, C] ->
   classify: a 1000-class logit head and a 1000-d embedding look alike, and classify is how such a
   model was judged before tasks existed.
7. [N, C, H, W] or [N, H, W, C] with 2 <= C <= 32 classes and H, W >= 8 -> segment, except C = 3,
   which is as likely an RGB image (an enhancer, a style transfer) -> raw.
8. Anything else -> raw (SNR and cosine, as before), and the reason names the --task to pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from edgeport.tasks import detection
from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import TaskSpec
from edgeport.types import TensorSpec

# Raw logits are called CTC only with a clear blank: one class best on at least half the steps, among at
# least CTC_MIN_CLASSES (digits and a blank). A [N, 12, 6] frame-feature output of a Keras audio model
# had one class best on 30-40% of its steps and was judged as a recognizer at 0.3.
CTC_BLANK_SHARE = 0.5
CTC_MIN_CLASSES = 11
TOLERANCE = 1e-2
EMBED_MIN_DIM = 32  # an unnormalised [N, D] is called an embedding only from this width and with a telling name
EMBED_NAME = re.compile(r"emb|feat|descr|vector", re.IGNORECASE)
SEGMENT_CLASSES = (2, 32)  # a segmenter's class axis: few classes
SEGMENT_MIN_SIDE = 8


def detect_task(outputs: Sequence[TensorSpec], references: list[np.ndarray], labels: object | None) -> TaskSpec:
    first = references[0]
    name = outputs[0].name if outputs else "output 0"
    seen = f"'{name}' {_dims(first)}"

    def found(task: str, why: str, **options: str) -> TaskSpec:
        return TaskSpec(task, dict(options), detected=True, reason=why)

    if isinstance(labels, TaskLabels):
        return _from_labels(labels, references, seen, found)
    y = labels if isinstance(labels, np.ndarray) else None
    if y is not None and y.ndim == 1 and first.ndim == 2 and first.shape[1] > 1:
        return found("classify", f"{seen} with one class id per sample as labels")
    if first.ndim == 3 and len(references) == 1 and _log_probabilities(first):
        # a distribution over the last axis at every step is a recognizer's head, whatever its shape
        # (PP-OCRv4's softmax [N, 40, 6625] has the shape of a YOLOv8 head)
        return _sequence(first, seen, y, found)
    layout, why = detection.guess_layout([tuple(int(d) for d in r.shape) for r in references])
    if layout is not None:
        return found("detect", f"{why}: a dense detection head", layout=layout)
    if first.ndim == 3:
        return _sequence(first, seen, y, found)
    if first.ndim == 2 and first.shape[1] > 1:
        return _vector(first, name, seen, found)
    if first.ndim == 4:
        return _map(first, seen, y, found)
    return found("raw", f"{seen} matches no task signature: judged by SNR "
                        "(pass --task classify, ctc, detect, embed or segment to judge the task)")


def _from_labels(labels: TaskLabels, references: list[np.ndarray], seen: str, found) -> TaskSpec:
    first = references[0]
    if (labels.text is not None or labels.tokens is not None) and first.ndim == 3:
        blank, share = _dominant_class(first)
        blank = blank if share >= CTC_BLANK_SHARE else 0
        what = "text" if labels.text is not None else "token"
        return found("ctc", f"{seen} as [N, steps, classes] with {what} labels: a CTC recognizer (blank {blank})", blank=str(blank))
    if labels.boxes is not None:
        layout, why = detection.guess_layout([tuple(int(d) for d in r.shape) for r in references])
        if layout is not None:
            return found("detect", f"{why} with box labels: a detector", layout=layout)
        return found("raw", f"box labels, but {why}: judged by SNR (pass --task detect:layout=yolo|yolov8|pairs)")
    if labels.masks is not None and first.ndim == 4:
        axis = "nhwc" if tuple(labels.masks.shape[1:]) == tuple(first.shape[1:3]) else "nchw"
        return found("segment", f"{seen} with a class map per sample as labels", layout=axis)
    return found("raw", f"{seen} does not fit its {labels.describe()} labels: judged by SNR (pass --task to choose)")


def _sequence(first: np.ndarray, seen: str, y: np.ndarray | None, found) -> TaskSpec:
    if first.shape[1] > 1 and first.shape[2] >= 3:
        blank, share = _dominant_class(first)
        sequences = y is not None and y.ndim == 2 and y.dtype.kind in "iu"
        blank_found = share >= CTC_BLANK_SHARE and first.shape[2] >= CTC_MIN_CLASSES
        if _log_probabilities(first) or blank_found or sequences:
            blank = blank if share >= CTC_BLANK_SHARE else 0  # no clear blank: CTC's usual index 0
            what = ("per-step probabilities" if _probabilities(first) else
                    "per-step log-probabilities" if _log_probabilities(first) else
                    f"class {blank} best on {share:.0%} of steps" if blank_found else "label sequences")
            return found("ctc", f"{seen} as [N, steps, classes] with {what}: a CTC recognizer (blank {blank})",
                         blank=str(blank))
        return found("raw", f"{seen} per-step scores but no class of {CTC_MIN_CLASSES} or more wins {CTC_BLANK_SHARE:.0%} "
                            "of the steps (no CTC blank): "
                            "judged by SNR (pass --task ctc:blank=K for a recognizer)")
    return found("raw", f"{seen} matches no task signature: judged by SNR (pass --task ctc or detect to judge the task)")


def _vector(first: np.ndarray, name: str, seen: str, found) -> TaskSpec:
    width = first.shape[1]
    if width >= 8 and _unit_rows(first) and not _probabilities(first):  # a confident softmax also has unit norm
        return found("embed", f"{seen} rows have unit L2 norm: embeddings")
    if width >= EMBED_MIN_DIM and EMBED_NAME.search(name) and not _probabilities(first):
        return found("embed", f"{seen} named like an embedding, {width} values per sample and not probabilities")
    hint = " (pass --task embed if these are embeddings)" if width >= EMBED_MIN_DIM else ""
    return found("classify", f"{seen} scores per class{hint}")


def _map(first: np.ndarray, seen: str, y: np.ndarray | None, found) -> TaskSpec:
    if y is not None and y.ndim == 3 and y.dtype.kind in "iu":
        return found("segment", f"{seen} with a class map per sample as labels",
                     layout="nhwc" if y.shape[1:] == first.shape[1:3] else "nchw")
    low, high = SEGMENT_CLASSES
    for layout, classes, sides in (("nchw", first.shape[1], first.shape[2:]), ("nhwc", first.shape[3], first.shape[1:3])):
        if low <= classes <= high and min(sides) >= SEGMENT_MIN_SIDE:
            if classes == 3:
                return found("raw", f"{seen} has 3 channels at {sides[0]}x{sides[1]}: as likely an image as 3 classes, "
                                    "judged by SNR (pass --task segment for a segmenter)")
            return found("segment", f"{seen} {classes} class scores per pixel: a segmenter", layout=layout)
    return found("raw", f"{seen} matches no task signature: judged by SNR (pass --task segment to judge per-pixel classes)")


def _dims(x: np.ndarray) -> str:
    return "[N, " + ", ".join(str(d) for d in x.shape[1:]) + "]"


def _probabilities(x: np.ndarray) -> bool:
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return bool(np.all(rows >= 0) and np.all(np.abs(rows.sum(1) - 1) < TOLERANCE))


def _log_probabilities(x: np.ndarray) -> bool:
    steps = x.reshape(-1, x.shape[-1]).astype(np.float64)
    top = steps.max(1, keepdims=True)
    logsumexp = top[:, 0] + np.log(np.exp(steps - top).sum(1))
    return bool(np.all(np.abs(logsumexp) < TOLERANCE) or _probabilities(x))


def _dominant_class(x: np.ndarray) -> tuple[int, float]:
    best = np.argmax(x, -1).ravel()
    counts = np.bincount(best, minlength=x.shape[-1])
    return int(np.argmax(counts)), float(counts.max() / max(1, best.size))


def _unit_rows(x: np.ndarray) -> bool:
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    return bool(np.all(np.abs(norms - 1.0) < TOLERANCE))
