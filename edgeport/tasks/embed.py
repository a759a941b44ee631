"""Embedding models: per-sample cosine to the float embedding, and nearest-neighbour identity.

The primary figure is the worst sample's cosine, not the mean or a percentile: a validation set holds
tens to hundreds of samples, where the 1st percentile is the minimum anyway, and one embedding that
drifts is one enrolled face or speaker the app stops recognising. The mean and 5th percentile are
reported beside it. Nearest-neighbour identity asks what a retrieval app sees: does each sample's
closest other sample in the set stay the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.tasks.spec import TaskScore, TaskSpec


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    a = refs[0].reshape(len(refs[0]), -1).astype(np.float64)
    b = outs[0].reshape(len(outs[0]), -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    details: dict[str, Any] = {"cosine_mean": float(np.mean(cos)), "cosine_p05": float(np.percentile(cos, 5)),
                               "worst_sample": int(np.argmin(cos)), "samples": len(a)}
    if len(a) > 2:  # with two samples each one's neighbour is the other: nothing to learn
        details["nn_identity"] = float(np.mean(nearest(a) == nearest(b)))
    return TaskScore("embed", "embed_cosine_min", float(np.min(cos)), details)


def nearest(x: np.ndarray) -> np.ndarray:
    """Index of each row's most cosine-similar other row."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argmax(sim, 1)
