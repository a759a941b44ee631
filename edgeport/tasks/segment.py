"""Segmenters: the per-pixel argmax class, mean IoU and pixel agreement against the float model
(and against class maps when the data has `masks`).

The class axis is axis 1 for [N, C, H, W] and the last for [N, H, W, C]; `--task segment:layout=`
says which, else the smaller of the two is taken (classes are few, images are at least 8 pixels a
side) and, with masks, the one whose other axes match the masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import TaskScore, TaskSpec


def class_axis(shape: tuple[int, ...], layout: str | None, masks: np.ndarray | None = None) -> int:
    if layout:
        return 1 if layout == "nchw" else -1
    if masks is not None and tuple(masks.shape[1:]) == tuple(shape[1:3]) != tuple(shape[2:4]):
        return -1
    if masks is not None and tuple(masks.shape[1:]) == tuple(shape[2:4]):
        return 1
    return -1 if shape[-1] < shape[1] else 1


def miou(ref: np.ndarray, got: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean over the classes present in either map of intersection over union."""
    if valid is not None:
        ref, got = ref[valid], got[valid]
    classes = np.union1d(np.unique(ref), np.unique(got))
    ious = [np.sum((ref == c) & (got == c)) / max(int(np.sum((ref == c) | (got == c))), 1) for c in classes]
    return float(np.mean(ious)) if ious else 1.0


def masks_of(labels: object | None) -> np.ndarray | None:
    if isinstance(labels, TaskLabels):
        return labels.masks
    y = labels if isinstance(labels, np.ndarray) else None
    return y if y is not None and y.ndim == 3 and y.dtype.kind in "iu" else None


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    masks = masks_of(labels)
    axis = class_axis(tuple(refs[0].shape), spec.options.get("layout"), masks)
    ref, got = np.argmax(refs[0], axis), np.argmax(outs[0], axis)
    details: dict[str, Any] = {"pixel_agreement": float(np.mean(ref == got)),
                               "classes": int(len(np.union1d(np.unique(ref), np.unique(got)))),
                               "class_axis": "last" if axis == -1 else "1"}
    if masks is not None and masks.shape == got.shape:
        valid = masks >= 0
        details.update(miou_vs_labels=miou(masks, got, valid), reference_miou_vs_labels=miou(masks, ref, valid),
                       pixel_accuracy_vs_labels=float(np.mean(got[valid] == masks[valid])) if valid.any() else None)
    return TaskScore("segment", "segment_miou", miou(ref, got), details)
