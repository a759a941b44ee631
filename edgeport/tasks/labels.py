"""Labels a task scores against besides class ids, as saved in the data .npz next to the input `x`.

- `y`       [N] int: class ids (classify; read as before tasks existed).
- `text`    [N] str: the expected string of each sample (ctc); needs `charset`.
- `charset` str, or [C] str: what each class index prints, in class order with the blank's slot
            included (any placeholder), so charset[k] is class k's text: "-0123456789" for a blank 0
            and ten digits. One string means one character per class; an array allows longer tokens.
- `tokens`  [N, L] int: the expected class indices of each sample (ctc), padded with -1.
- `boxes`   [N, M, 5] float: ground-truth boxes x1, y1, x2, y2, class of each sample (detect) in the
            model's output coordinates, padded with rows of -1.
- `masks`   [N, H, W] int: the class of each pixel (segment), -1 where the pixel is not scored.

A key named like a model input is that input's data, never labels. Problems are CalibrationErrors
(exit 2) that say which key and how to save it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from edgeport.errors import CalibrationError

KEYS = ("text", "charset", "tokens", "boxes", "masks")
PER_SAMPLE = ("text", "tokens", "boxes", "masks")  # indexed by sample; charset is one per file


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value
class TaskLabels:
    text: np.ndarray | None = None  # [N] str
    charset: tuple[str, ...] | None = None  # class index -> text
    tokens: np.ndarray | None = None  # [N, L] int64, -1 pads
    boxes: np.ndarray | None = None  # [N, M, 5] float64, -1 rows pad
    masks: np.ndarray | None = None  # [N, H, W] int64, -1 ignores

    def __len__(self) -> int:
        return next((len(a) for a in self.arrays().values()), 0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-sample arrays that are present, by key (hashing and subsetting use these)."""
        return {k: getattr(self, k) for k in PER_SAMPLE if getattr(self, k) is not None}

    def take(self, sel: np.ndarray) -> TaskLabels:
        return replace(self, **{k: v[sel] for k, v in self.arrays().items()})

    def sequences(self) -> list[tuple[int, ...]] | None:
        """The expected CTC class sequences, from `tokens` or from `text` through `charset`."""
        if self.tokens is not None:
            return [tuple(int(c) for c in row if c >= 0) for row in self.tokens]
        if self.text is None or self.charset is None:
            return None
        return [encode(str(t), self.charset) for t in self.text]

    def describe(self) -> str:
        return ", ".join(f"{k} {list(v.shape)}" for k, v in self.arrays().items()) + (
            f", charset of {len(self.charset)}" if self.charset else "")


def encode(text: str, charset: tuple[str, ...]) -> tuple[int, ...]:
    """A string as class indices, longest token first; a character outside the charset is -2 (never
    predicted, so it counts as an error instead of disappearing)."""
    index = {tok: i for i, tok in reversed(list(enumerate(charset))) if tok}
    longest = max((len(t) for t in index), default=1)
    out, i = [], 0
    while i < len(text):
        for size in range(min(longest, len(text) - i), 0, -1):
            if text[i:i + size] in index:
                out.append(index[text[i:i + size]])
                i += size
                break
        else:
            out.append(-2)
            i += 1
    return tuple(out)


def from_arrays(content: Mapping[str, np.ndarray], count: int, what: str, inputs: tuple[str, ...] = ()) -> TaskLabels | None:
    """The task labels among a .npz's arrays (keys KEYS not named like an input), checked against `count`."""
    found = {k: np.asarray(content[k]) for k in KEYS if k in content and k not in inputs}
    if not found:
        return None
    if "text" in found and "tokens" in found:
        raise CalibrationError(f"{what}: both 'text' and 'tokens' given", hint="save the CTC labels once: 'text' + 'charset', or 'tokens'")
    charset = _charset(found.pop("charset"), what) if "charset" in found else None
    if "text" in found and charset is None:
        raise CalibrationError(f"{what}: 'text' labels need a 'charset' to map class indices to characters",
                               hint="save charset='-0123456789' (class k prints charset[k]; the blank's slot included)")
    checked = {}
    for key, arr in found.items():
        want_dims, kinds = {"text": (1, "U"), "tokens": (2, "iu"), "boxes": (3, "iuf"), "masks": (3, "iu")}[key]
        if arr.ndim != want_dims or arr.dtype.kind not in kinds or (key == "boxes" and arr.shape[-1] != 5):
            shape = {"text": "(N,) str", "tokens": "(N, L) int, -1 padded", "boxes": "(N, M, 5) x1,y1,x2,y2,class, -1 padded",
                     "masks": "(N, H, W) int, -1 ignored"}[key]
            raise CalibrationError(f"{what}: '{key}' has shape {list(arr.shape)} and dtype {arr.dtype}",
                                   hint=f"save '{key}' as {shape}")
        if len(arr) != count:
            raise CalibrationError(f"{what}: {len(arr)} '{key}' labels for {count} samples", hint="save exactly one per sample")
        if key == "boxes" and not np.isfinite(arr).all():
            raise CalibrationError(f"{what}: 'boxes' has NaN/Inf", hint="pad missing boxes with rows of -1")
        checked[key] = arr.astype(str) if key == "text" else arr.astype(np.float64 if key == "boxes" else np.int64)
    if not checked:
        raise CalibrationError(f"{what}: a 'charset' but no 'text' labels", hint="save the strings as 'text', or drop 'charset'")
    return TaskLabels(charset=charset, **checked)


def _charset(arr: np.ndarray, what: str) -> tuple[str, ...]:
    if arr.dtype.kind != "U" or arr.ndim > 1:
        raise CalibrationError(f"{what}: 'charset' has dtype {arr.dtype} and shape {list(arr.shape)}",
                               hint="save charset as one string (one character per class) or a (C,) array of strings")
    return tuple(str(arr)) if arr.ndim == 0 else tuple(str(t) for t in arr)
