"""Task metrics: judge a quantized model by what its user's task needs, against the float model.

classify: top-1 agreement (accuracy vs integer labels is judged by the verdict's label drop).
ctc: greedy-decoded strings identical to float, character error rate vs float (and vs label sequences).
detect: decode + class-wise NMS, then recall and precision of the float detections at IoU 0.5 (and mAP50
vs box labels). embed: the worst sample's cosine, and nearest-neighbour identity within the set.
segment: mean IoU of the per-pixel argmax against float, and pixel agreement. raw: SNR and cosine.
Pure numpy, no I/O: the pipeline (validate/task_score.py) ties these to a run and a budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeport.tasks import ctc, detection
from edgeport.tasks.detect_kind import detect_task
from edgeport.tasks.spec import DEFAULT_MIN, TASKS, TaskScore, TaskSpec, parse_task

__all__ = ["DEFAULT_MIN", "TASKS", "TaskScore", "TaskSpec", "detect_task", "parse_task", "score"]


def score(spec: TaskSpec, references: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
          labels: object | None = None) -> TaskScore:
    """The task's metrics for `outputs` (each stacked over samples) against the float `references`."""
    return _SCORERS[spec.name](spec, list(references), list(outputs), labels)


def _classify(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    ref, got = refs[0].reshape(len(refs[0]), -1), outs[0].reshape(len(outs[0]), -1)
    agree = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
    details: dict[str, Any] = {}
    y = np.asarray(labels) if labels is not None else None
    if y is not None and y.ndim == 1 and len(y) == len(got):
        details.update(accuracy=float(np.mean(np.argmax(got, 1) == y)), reference_accuracy=float(np.mean(np.argmax(ref, 1) == y)))
    return TaskScore("classify", "top1_agreement", agree, details)


def _ctc(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    blank, layout = int(spec.option("blank", "0")), spec.option("layout", "ntc")
    ref = ctc.greedy(ctc.to_ntc(refs[0], layout), blank)
    got = ctc.greedy(ctc.to_ntc(outs[0], layout), blank)
    same = float(np.mean([a == b for a, b in zip(ref, got, strict=True)]))
    details: dict[str, Any] = {"cer_vs_float": round(ctc.cer(ref, got), 6), "sequences": len(ref), "blank": blank}
    truth = ctc.label_sequences(labels, blank) if labels is not None else None
    if truth is not None and len(truth) == len(got):
        details.update(cer_vs_labels=round(ctc.cer(truth, got), 6), reference_cer_vs_labels=round(ctc.cer(truth, ref), 6),
                       exact_vs_labels=float(np.mean([a == b for a, b in zip(truth, got, strict=True)])))
    return TaskScore("ctc", "ctc_identical", same, details)


def _detect(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    layout = spec.options.get("layout") or detection.guess_layout([tuple(r.shape) for r in refs])[0]
    if layout is None:
        raise ValueError("the outputs do not look like a detection head; pass --task detect:layout=yolo|yolov8|pairs")
    iou_max, score_min = float(spec.option("iou", "0.45")), float(spec.option("score", "0.25"))
    ref = [detection.nms(d, iou_max) for d in detection.decode(refs, layout, score_min)]
    got = [detection.nms(d, iou_max) for d in detection.decode(outs, layout, score_min)]
    hits = sum(detection.match(r, g) for r, g in zip(ref, got, strict=True))
    n_ref, n_got = sum(len(r) for r in ref), sum(len(g) for g in got)
    recall = hits / n_ref if n_ref else (1.0 if not n_got else 0.0)
    precision = hits / n_got if n_got else (1.0 if not n_ref else 0.0)
    details: dict[str, Any] = {"precision": round(precision, 6), "f1": round(2 * recall * precision / max(recall + precision, 1e-12), 6),
                               "float_detections": n_ref, "detections": n_got, "layout": layout,
                               "score_threshold": score_min, "nms_iou": iou_max}
    truth = detection.ground_truth(labels)
    if truth is not None and len(truth) == len(got):
        details.update(map50_vs_labels=detection.average_precision_50(truth, got),
                       reference_map50_vs_labels=detection.average_precision_50(truth, ref))
    return TaskScore("detect", "detect_recall", recall, details)


def _embed(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    a, b = refs[0].reshape(len(refs[0]), -1).astype(np.float64), outs[0].reshape(len(outs[0]), -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    details: dict[str, Any] = {"cosine_mean": float(np.mean(cos)), "cosine_p05": float(np.percentile(cos, 5))}
    if len(a) > 2:
        details["nn_identity"] = float(np.mean(_nearest(a) == _nearest(b)))
    # The worst sample, not the mean: one embedding that drifts is one user the app stops recognising.
    return TaskScore("embed", "embed_cosine_min", float(np.min(cos)), details)


def _nearest(x: np.ndarray) -> np.ndarray:
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argmax(sim, 1)


def _segment(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    axis = -1 if spec.option("layout", "nchw") == "nhwc" else 1
    ref, got = np.argmax(refs[0], axis), np.argmax(outs[0], axis)
    classes = np.union1d(np.unique(ref), np.unique(got))
    ious = [np.sum((ref == c) & (got == c)) / max(np.sum((ref == c) | (got == c)), 1) for c in classes]
    details = {"pixel_agreement": float(np.mean(ref == got)), "classes": int(len(classes))}
    return TaskScore("segment", "segment_miou", float(np.mean(ious)), details)


def _raw(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    from edgeport.validate.metrics import compare_output

    found = [compare_output(f"output_{i}", r, o) for i, (r, o) in enumerate(zip(refs, outs, strict=True))]
    return TaskScore("raw", "snr_db", float(min(m.snr_db for m in found)), {"cosine_mean": float(min(m.cosine_mean for m in found))})


_SCORERS = {"classify": _classify, "ctc": _ctc, "detect": _detect, "embed": _embed, "segment": _segment, "raw": _raw}
