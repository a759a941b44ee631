"""Which task a model does, guessed from its float outputs and the labels, with the reason in one line.

Conservative on purpose: a guess that changes how a model is judged needs a clear signature (a dense
detection head, per-step log-probabilities, unit-norm embeddings, per-pixel label maps). Everything
else keeps today's judgement: classify for [N, C] scores, raw (SNR) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeport.tasks import detection
from edgeport.tasks.spec import TaskSpec
from edgeport.types import TensorSpec

CTC_BLANK_SHARE = 0.3  # a CTC model's most frequent best class (its blank) wins this share of steps or more
TOLERANCE = 1e-2


def detect_task(outputs: Sequence[TensorSpec], references: list[np.ndarray], labels: object | None) -> TaskSpec:
    shapes = [tuple(int(d) for d in r.shape) for r in references]
    first = references[0]
    y = np.asarray(labels) if labels is not None else None
    name = outputs[0].name if outputs else "output 0"

    def found(task: str, why: str, **options: str) -> TaskSpec:
        return TaskSpec(task, dict(options), detected=True, reason=why)

    if y is not None and y.ndim == 1 and first.ndim == 2 and first.shape[1] > 1:
        return found("classify", f"'{name}' {_dims(first)} with one class id per sample as labels")
    layout, why = detection.guess_layout(shapes)
    if layout is not None:
        return found("detect", f"{why}: a dense detection head", layout=layout)
    if first.ndim == 3 and first.shape[1] > 1 and first.shape[2] >= 3:
        blank, share = _dominant_class(first)
        blank = blank if share >= CTC_BLANK_SHARE else 0  # no clear blank: CTC's usual index 0
        if _log_probabilities(first) or share >= CTC_BLANK_SHARE or (y is not None and y.ndim == 2):
            what = "per-step log-probabilities" if _log_probabilities(first) else f"class {blank} best on {share:.0%} of steps"
            return found("ctc", f"'{name}' {_dims(first)} [N, steps, classes] with {what}: a CTC recognizer (blank {blank})",
                         blank=str(blank))
    if first.ndim == 2 and first.shape[1] >= 8 and _unit_rows(first):
        return found("embed", f"'{name}' {_dims(first)} rows have unit L2 norm: embeddings")
    if first.ndim == 4 and y is not None and y.ndim == 3:
        return found("segment", f"'{name}' {_dims(first)} with a class map per sample as labels",
                     layout="nhwc" if y.shape[1:] == first.shape[1:3] else "nchw")
    if first.ndim == 2 and first.shape[1] > 1:
        return found("classify", f"'{name}' {_dims(first)} scores per class (pass --task embed for embeddings)")
    return found("raw", f"'{name}' {_dims(first)} matches no task signature: judged by SNR "
                        "(pass --task segment, ctc, detect or embed to judge the task)")


def _dims(x: np.ndarray) -> str:
    return "[N, " + ", ".join(str(d) for d in x.shape[1:]) + "]"


def _log_probabilities(x: np.ndarray) -> bool:
    steps = x.reshape(-1, x.shape[-1]).astype(np.float64)
    top = steps.max(1, keepdims=True)
    logsumexp = top[:, 0] + np.log(np.exp(steps - top).sum(1))
    return bool(np.all(np.abs(logsumexp) < TOLERANCE) or (np.all(steps >= 0) and np.all(np.abs(steps.sum(1) - 1) < TOLERANCE)))


def _dominant_class(x: np.ndarray) -> tuple[int, float]:
    best = np.argmax(x, -1).ravel()
    counts = np.bincount(best, minlength=x.shape[-1])
    return int(np.argmax(counts)), float(counts.max() / max(1, best.size))


def _unit_rows(x: np.ndarray) -> bool:
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    return bool(np.all(np.abs(norms - 1.0) < TOLERANCE))
