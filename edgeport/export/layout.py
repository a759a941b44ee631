"""Map tensors between the source layout (NCHW, NCW, ...) and what the TFLite model expects.

onnx2tf turns channel-first tensors into channel-last ones. Which tensors it moved is read from the
shapes; when a shape reads the same both ways (1x8x8x8) the caller decides: inputs by onnx2tf's rule
(rank-4/5 inputs are moved unless kept), outputs by comparing against the reference numerically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Perm = tuple[int, ...] | None


class ShapeMismatch(ValueError):
    """A TFLite tensor fits no layout reading of its source tensor: the converter changed the
    model's interface (an output with 3x the batch, a missing dimension), not just its layout."""


def channels_last_perm(rank: int) -> tuple[int, ...]:
    """(0, 2, ..., rank-1, 1): NCHW -> NHWC, NCW -> NWC, NCDHW -> NDHWC."""
    return (0, *range(2, rank), 1)


def candidate_perms(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> list[Perm]:
    """All layout readings (None = unchanged, or channels-last) under which src fits dst."""
    src, dst = tuple(src_shape), tuple(dst_shape)
    if len(src) != len(dst):
        return []
    found: list[Perm] = []
    if _fits(src, dst):
        found.append(None)
    if len(src) >= 3:
        perm = channels_last_perm(len(src))
        if _fits(tuple(src[i] for i in perm), dst):
            found.append(perm)
    return found


def _fits(src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    return all(s == d or s <= 0 or d <= 0 for s, d in zip(src, dst, strict=True))


def input_perm(src_shape: tuple[int, ...], dst_shape: tuple[int, ...], moved_by_default: bool) -> Perm:
    """Permutation to apply to a source-layout input so it matches the TFLite input."""
    found = candidate_perms(src_shape, dst_shape)
    if not found:
        raise ShapeMismatch(f"input shape {tuple(src_shape)} does not match TFLite input {tuple(dst_shape)}")
    if len(found) == 1:
        return found[0]
    return channels_last_perm(len(src_shape)) if moved_by_default else None


def apply(array: np.ndarray, perm: Perm) -> np.ndarray:
    return np.ascontiguousarray(array if perm is None else array.transpose(perm))


def undo(array: np.ndarray, perm: Perm) -> np.ndarray:
    """Inverse of apply(): TFLite layout back to the source layout."""
    return array if perm is None else np.ascontiguousarray(array.transpose(np.argsort(perm)))


def output_perm(ref_shape: tuple[int, ...], tfl_sample: np.ndarray, ref_sample: np.ndarray | None) -> Perm:
    """Which reading of a TFLite output matches the reference; ties are settled by the values."""
    found = candidate_perms(tuple(ref_shape), tuple(tfl_sample.shape))
    if not found:
        raise ShapeMismatch(f"output shape {tuple(tfl_sample.shape)} does not match reference {tuple(ref_shape)}")
    if len(found) == 1 or ref_sample is None:
        return found[-1]
    errors = [float(np.mean(np.abs(undo(tfl_sample, p).astype(np.float64) - ref_sample))) for p in found]
    return found[int(np.argmin(errors))]


def tflite_layout(arrays: dict[str, np.ndarray], input_map: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """Source-layout arrays (by source input name) -> TFLite-layout arrays by signature input name,
    following a backend's input map (export/backend.py): what calibration and candidate runs feed."""
    return {key: apply(arrays[spec["source"]], tuple(spec["perm"]) if spec.get("perm") is not None else None)
            for key, spec in input_map.items()}
