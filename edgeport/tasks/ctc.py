"""CTC recognizers: greedy decoding, strings identical to float, character error rate.

The output is per-step class scores, [N, T, C] by default (`--task ctc:layout=tnc` for time-major
[T, N, C], `nct` for [N, C, T]); the blank is class 0 unless `blank=` says otherwise. Labels are
class sequences (`tokens`, -1 padded) or strings (`text`) mapped through a `charset` (tasks/labels.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import TaskScore, TaskSpec

EXAMPLES = 3  # differing strings shown in the report: enough to see the kind of error, few enough to read


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
    """Levenshtein distance (insert, delete, substitute), one row at a time. Most quantized strings equal
    the float ones, so that case returns at once; a library (rapidfuzz) is not worth a dependency here."""
    if a == b:
        return 0
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
    """The expected sequences: TaskLabels (tokens, or text through its charset), or an int array
    [N, L] padded with -1 (or the blank) -> one tuple per sample."""
    if isinstance(labels, TaskLabels):
        found = labels.sequences()
        return None if found is None else [tuple(c for c in row if c != blank) for row in found]
    y = labels if isinstance(labels, np.ndarray) else None
    if y is None or y.ndim != 2 or y.dtype.kind not in "iu":
        return None
    return [tuple(int(c) for c in row if c >= 0 and c != blank) for row in y]


def render(seq: tuple[int, ...], charset: tuple[str, ...] | None) -> str:
    """A class sequence as text through the charset, else its indices."""
    if charset:
        return "".join(charset[c] if 0 <= c < len(charset) else "?" for c in seq)
    return " ".join(str(c) for c in seq)


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    blank, layout = int(spec.option("blank", "0")), spec.option("layout", "ntc")
    ref = greedy(to_ntc(refs[0], layout), blank)
    got = greedy(to_ntc(outs[0], layout), blank)
    same = [a == b for a, b in zip(ref, got, strict=True)]
    charset = labels.charset if isinstance(labels, TaskLabels) else None
    details: dict[str, Any] = {"cer_vs_float": round(cer(ref, got), 6), "sequences": len(ref), "blank": blank,
                               "differing": [{"sample": i, "float": render(ref[i], charset), "quantized": render(got[i], charset)}
                                             for i in np.flatnonzero(~np.array(same, bool))[:EXAMPLES].tolist()]}
    truth = label_sequences(labels, blank) if labels is not None else None
    if truth is not None and len(truth) == len(got):
        details.update(cer_vs_labels=round(cer(truth, got), 6), reference_cer_vs_labels=round(cer(truth, ref), 6),
                       exact_vs_labels=float(np.mean([a == b for a, b in zip(truth, got, strict=True)])),
                       reference_exact_vs_labels=float(np.mean([a == b for a, b in zip(truth, ref, strict=True)])))
    return TaskScore("ctc", "ctc_identical", float(np.mean(same)) if same else 1.0, details)
