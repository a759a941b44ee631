"""CTC recognizers: greedy decoding, strings identical to float, character error rate."""

from __future__ import annotations

import numpy as np


def to_ntc(y: np.ndarray, layout: str) -> np.ndarray:
    """Per-step class scores as [N, T, C] from the model's [N,T,C], [T,N,C] or [N,C,T]."""
    if layout == "tnc":
        return np.transpose(y, (1, 0, 2))
    if layout == "nct":
        return np.transpose(y, (0, 2, 1))
    return y


def greedy(y: np.ndarray, blank: int) -> list[tuple[int, ...]]:
    """Best path: argmax per step, repeats collapsed, blanks dropped."""
    best = np.argmax(y, axis=-1)
    out = []
    for row in best:
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append(tuple(int(c) for c in row[keep] if c != blank))
    return out


def edit_distance(a: tuple[int, ...] | str, b: tuple[int, ...] | str) -> int:
    """Levenshtein distance (insert, delete, substitute), one row at a time."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(refs: list, hyps: list) -> float:
    """Character error rate: total edits over total reference characters (an empty reference counts 1)."""
    edits = sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True))
    return edits / max(1, sum(max(1, len(r)) for r in refs))


def label_sequences(labels: object, blank: int) -> list[tuple[int, ...]] | None:
    """Integer label sequences [N, L] padded with -1 (or the blank) -> one tuple per sample."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.dtype.kind not in "iu":
        return None
    return [tuple(int(c) for c in row if c >= 0 and c != blank) for row in y]
