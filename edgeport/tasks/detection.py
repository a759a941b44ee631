"""Detectors: decode the raw head into boxes, class-wise NMS, then match against the float detections.

Layouts (`--task detect:layout=...`):
- `yolo`: one output [N, B, 4+1+C]: cx, cy, w, h, objectness, class scores (YOLOv5/YOLOX style);
- `yolov8`: one output [N, 4+C, B]: cx, cy, w, h, class scores, no objectness;
- `pairs`: two outputs, boxes [N, B, 4] as x1, y1, x2, y2 and scores [N, B, C], in either order.
Scores are used as the model gives them; a head that outputs logits is thresholded on the logits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import TaskScore, TaskSpec

MIN_BOXES = 100  # fewer anchors than this is not a dense detection head


def guess_layout(shapes: list[tuple[int, ...]]) -> tuple[str | None, str]:
    """(layout, why) from the output shapes, or (None, why not)."""
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes) and 4 in (shapes[0][-1], shapes[1][-1]) \
            and shapes[0][1] == shapes[1][1] and shapes[0][1] >= MIN_BOXES:
        box = _box_index(shapes)
        return "pairs", f"boxes {list(shapes[box])} and scores {list(shapes[1 - box])}"
    if len(shapes) != 1 or len(shapes[0]) != 3:
        return None, "not one [N, boxes, values] output or a boxes+scores pair"
    _, a, b = shapes[0]
    if a >= MIN_BOXES and 6 <= b < a:
        return "yolo", f"one output [N, {a} boxes, 4+1+{b - 5} values]"
    if b >= MIN_BOXES and 5 <= a < b:
        return "yolov8", f"one output [N, 4+{a - 4} values, {b} boxes]"
    return None, f"output {list(shapes[0])} has fewer than {MIN_BOXES} boxes"


def decode(outputs: list[np.ndarray], layout: str, score_min: float) -> list[np.ndarray]:
    """Per sample, candidate detections [K, 6]: x1, y1, x2, y2, score, class."""
    if layout == "pairs":
        box = _box_index([o.shape for o in outputs])
        boxes, scores = outputs[box], outputs[1 - box]
    else:
        y = outputs[0] if layout == "yolo" else np.transpose(outputs[0], (0, 2, 1))
        cxcywh = y[..., :4]
        boxes = np.concatenate([cxcywh[..., :2] - cxcywh[..., 2:] / 2, cxcywh[..., :2] + cxcywh[..., 2:] / 2], -1)
        scores = y[..., 5:] * y[..., 4:5] if layout == "yolo" else y[..., 4:]
    found = []
    for b, s in zip(boxes, scores, strict=True):
        cls = np.argmax(s, -1)
        best = s[np.arange(len(s)), cls]
        keep = best >= score_min
        found.append(np.concatenate([b[keep], best[keep, None], cls[keep, None]], 1).astype(np.float64))
    return found


def _box_index(shapes: list[tuple[int, ...]]) -> int:
    """Which of a boxes+scores pair holds the boxes (last axis 4); the first one when both do."""
    return 0 if shapes[0][-1] == 4 else 1


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a [K,4] with every box in b [M,4] (x1, y1, x2, y2)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(np.clip(x[:, 2:4] - x[:, :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def nms(dets: np.ndarray, iou_max: float) -> np.ndarray:
    """Class-wise greedy NMS on [K, 6] detections, highest score first."""
    kept = []
    for c in np.unique(dets[:, 5]):
        d = dets[dets[:, 5] == c]
        d = d[np.argsort(-d[:, 4], kind="stable")]
        while len(d):
            kept.append(d[0])
            d = d[1:][iou(d[:1, :4], d[1:, :4])[0] <= iou_max] if len(d) > 1 else d[:0]
    return np.array(kept).reshape(-1, 6)


def match(ref: np.ndarray, got: np.ndarray, iou_min: float = 0.5) -> int:
    """Greedy one-to-one matches of same-class boxes at IoU >= iou_min, best scores first."""
    used = np.zeros(len(got), bool)
    hits = 0
    for r in ref[np.argsort(-ref[:, 4], kind="stable")] if len(ref) else ref:
        cand = np.where((got[:, 5] == r[5]) & ~used)[0] if len(got) else np.array([], int)
        if len(cand):
            ious = iou(r[None, :4], got[cand, :4])[0]
            j = int(np.argmax(ious))
            if ious[j] >= iou_min:
                used[cand[j]] = True
                hits += 1
    return hits


def average_precision_50(truth: list[np.ndarray], dets: list[np.ndarray]) -> float | None:
    """mAP at IoU 0.5 over classes (all-point interpolation) against ground-truth [M, 5] x1,y1,x2,y2,class."""
    classes = sorted({int(c) for t in truth for c in t[:, 4]})
    if not classes:
        return None
    aps = []
    for c in classes:
        gts = [t[t[:, 4] == c] for t in truth]
        total = sum(len(g) for g in gts)
        rows = [(d[4], i, d[:4]) for i, ds in enumerate(dets) for d in ds if int(d[5]) == c]
        rows.sort(key=lambda r: -r[0])
        used = [np.zeros(len(g), bool) for g in gts]
        tp = np.zeros(len(rows))
        for k, (_, i, box) in enumerate(rows):
            if len(gts[i]):
                ious = iou(box[None], gts[i][:, :4])[0]
                j = int(np.argmax(ious))
                if ious[j] >= 0.5 and not used[i][j]:
                    used[i][j] = True
                    tp[k] = 1
        if not rows:
            aps.append(0.0)
            continue
        recall = np.cumsum(tp) / max(total, 1)
        precision = np.cumsum(tp) / np.arange(1, len(rows) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum(np.diff(np.concatenate([[0.0], recall])) * envelope)))
    return float(np.mean(aps))


def ground_truth(labels: object) -> list[np.ndarray] | None:
    """Box labels [N, M, 5] (x1, y1, x2, y2, class; rows of -1 pad) -> one [M_i, 5] array per sample."""
    y = labels.boxes if isinstance(labels, TaskLabels) else labels if isinstance(labels, np.ndarray) else None
    if y is None or y.ndim != 3 or y.shape[-1] != 5:
        return None
    return [row[row[:, 4] >= 0].astype(np.float64) for row in y]


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    layout, why = spec.options.get("layout"), ""
    if not layout:
        layout, why = guess_layout([tuple(r.shape) for r in refs])
    if layout is None:
        raise ValueError(f"the outputs do not look like a detection head ({why}); "
                         "pass --task detect:layout=yolo|yolov8|pairs")
    iou_max, score_min = float(spec.option("iou", "0.45")), float(spec.option("score", "0.25"))
    ref = [nms(d, iou_max) for d in decode(refs, layout, score_min)]
    got = [nms(d, iou_max) for d in decode(outs, layout, score_min)]
    hits = sum(match(r, g) for r, g in zip(ref, got, strict=True))
    n_ref, n_got = sum(len(r) for r in ref), sum(len(g) for g in got)
    # No float detections and none after quantization is agreement, not a zero.
    recall = hits / n_ref if n_ref else (1.0 if not n_got else 0.0)
    precision = hits / n_got if n_got else (1.0 if not n_ref else 0.0)
    details: dict[str, Any] = {"precision": round(precision, 6),
                               "f1": round(2 * recall * precision / max(recall + precision, 1e-12), 6),
                               "float_detections": n_ref, "detections": n_got, "layout": layout,
                               "score_threshold": score_min, "nms_iou": iou_max}
    truth = ground_truth(labels)
    if truth is not None and len(truth) == len(got):
        details.update(map50_vs_labels=average_precision_50(truth, got),
                       reference_map50_vs_labels=average_precision_50(truth, ref))
    return TaskScore("detect", "detect_recall", round(recall, 6), details)
