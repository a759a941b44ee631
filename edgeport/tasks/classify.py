"""Classifiers: top-1 agreement with the float model, and accuracy when the data has class ids."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.tasks.spec import TaskScore, TaskSpec


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    ref, got = refs[0].reshape(len(refs[0]), -1), outs[0].reshape(len(outs[0]), -1)
    agree = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
    details: dict[str, Any] = {"samples": len(got)}
    y = labels if isinstance(labels, np.ndarray) else None
    if y is not None and y.ndim == 1 and y.dtype.kind in "iu" and len(y) == len(got):
        details.update(accuracy=float(np.mean(np.argmax(got, 1) == y)),
                       reference_accuracy=float(np.mean(np.argmax(ref, 1) == y)))
    return TaskScore("classify", "top1_agreement", agree, details)
