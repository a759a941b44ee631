"""Labels must fit the model they score, or accuracy is meaningless.

A 2-class model scored against label 50 gets 0% reference and 0% TFLite accuracy, a 0 pp drop, and
would pass: garbage in, green light out. So every label problem is refused before any conversion
work, in one line that names the largest label and the size of the output the labels score (the
model's first output; accuracy is argmax over it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeport.errors import CalibrationError
from edgeport.types import TensorSpec


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _largest(y: np.ndarray) -> str:
    if y.size == 0 or y.dtype.kind not in "biuf":
        return "none"
    finite = y[np.isfinite(y)] if y.dtype.kind == "f" else y
    if finite.size == 0:
        return "none (all NaN/Inf)"
    top = finite.max()
    return str(int(top)) if float(top).is_integer() else f"{float(top):g}"


def _context(y: np.ndarray, outputs: Sequence[TensorSpec] | None) -> str:
    """'largest label 50; output 'logits' has 2 classes' — the two facts the user needs to see
    whether the data belongs to this model at all."""
    text = f"largest label {_largest(y)}"
    if outputs:
        out = outputs[0]
        classes = out.shape[1] if len(out.shape) == 2 else None
        size = f"{classes} classes" if classes else f"shape {_dims(out.shape)}"
        scored = "labels score the first of its " + f"{len(outputs)} outputs, " if len(outputs) > 1 else ""
        text += f"; {scored}output '{out.name}' has {size}"
    return text


def check_labels(labels: object, count: int, what: str, outputs: Sequence[TensorSpec] | None = None) -> np.ndarray:
    """Integer class ids, one per sample, each a valid index into the scored output.

    Whole-valued floats are accepted (np.savez of a float array of ids is common); `outputs` is
    None where the model's outputs are not known yet, and the range check then waits for
    `check_labels` to be called again with them.
    """
    y = np.asarray(labels)
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    ctx = _context(y, outputs)
    if y.ndim != 1:
        where = f"output '{outputs[0].name}'" if outputs else "the model's first output"
        raise CalibrationError(f"{what}: labels have shape {_dims(y.shape)}, not one class id per sample ({count},) ({ctx})",
                               hint=f"labels score only {where}: save its class ids as 'y' with shape ({count},) "
                                    "(one-hot labels: y.argmax(1))")
    if len(y) != count:
        raise CalibrationError(f"{what}: {len(y)} labels for {count} samples ({ctx})", hint="save exactly one label per sample")
    if not (y.dtype.kind in "biu" or (y.dtype.kind == "f" and bool(np.isfinite(y).all())
                                      and np.array_equal(y, np.round(y)))):
        raise CalibrationError(f"{what}: labels are not integer class ids (dtype {y.dtype}; {ctx})",
                               hint="save labels 'y' as int64 class ids 0..K-1")
    if y.size and int(y.min()) < 0:
        raise CalibrationError(f"{what}: labels contain negative class ids (smallest {int(y.min())}; {ctx})",
                               hint="save class ids 0..K-1")
    if outputs:
        check_fit(y, outputs, what)
    return y.astype(np.int64)


def check_fit(y: np.ndarray, outputs: Sequence[TensorSpec], what: str) -> None:
    """The scored output must be (batch, classes) with classes > 1, and every id below classes."""
    out = outputs[0]
    if not out.shape or (len(out.shape) == 2 and out.shape[1] < 0):
        return  # ONNX shape inference could not tell the class count; accuracy then says what it can
    ctx = _context(y, outputs)
    if len(out.shape) != 2 or out.shape[1] <= 1:
        others = [o.name for o in outputs[1:] if len(o.shape) == 2 and o.shape[1] > 1]
        drop = "drop the labels ('y' in the .npz, or the class sub-folders of an image folder)"
        fix = (f"make '{others[0]}' the model's first output, or {drop}" if others
               else f"{drop}; agreement with the float model is still measured")
        raise CalibrationError(f"{what}: labels score output '{out.name}' of shape {_dims(out.shape)}, which is not class "
                               f"scores (batch, classes) ({ctx})", hint=fix)
    classes = int(out.shape[1])
    if y.size and int(y.max()) >= classes:
        scored = f" (labels score the first of {len(outputs)} outputs)" if len(outputs) > 1 else ""
        raise CalibrationError(f"{what}: largest label {int(y.max())} is out of range: output '{out.name}' has {classes} "
                               f"classes, ids 0..{classes - 1}{scored}",
                               hint="check that this data belongs to this model (labels must be class ids of its output)")
