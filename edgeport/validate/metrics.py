"""Per-output agreement metrics between reference and TFLite outputs, plus task accuracy.

Non-finite outputs are not averaged away: they are counted and make the metrics fail (NaN from an
fp16 overflow must never look like a small error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OutputMetrics:
    name: str
    shape: tuple[int, ...]
    cosine_mean: float
    cosine_min: float
    max_abs_error: float
    snr_db: float
    nonfinite: int
    top1_agreement: float | None  # only for (N, classes) outputs

    def to_dict(self) -> dict:
        return {
            "name": self.name, "shape": list(self.shape), "cosine_mean": self.cosine_mean,
            "cosine_min": self.cosine_min, "max_abs_error": self.max_abs_error, "snr_db": self.snr_db,
            "nonfinite": self.nonfinite, "top1_agreement": self.top1_agreement,
        }


ZERO_OUTPUT_ATOL = 1e-5  # float rounding of an all-zero output; anything larger is a wrong output


def compare_output(name: str, ref: np.ndarray, got: np.ndarray) -> OutputMetrics:
    ref64 = ref.astype(np.float64).reshape(len(ref), -1)
    got64 = got.astype(np.float64).reshape(len(got), -1)
    nonfinite = int(np.size(got64) - np.count_nonzero(np.isfinite(got64)))
    if nonfinite:
        return OutputMetrics(name, tuple(ref.shape), float("nan"), float("nan"), float("inf"), float("-inf"),
                             nonfinite, 0.0 if _is_classifier(ref) else None)
    cos = _cosine_rows(ref64, got64)
    err = got64 - ref64
    signal = float(np.sum(ref64**2))
    noise = float(np.sum(err**2))
    if signal > 0:
        snr = float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)
    else:  # an all-zero reference (an unused head, a zero state): SNR has no scale, the error must be ~0
        snr = float("inf") if float(np.max(np.abs(err), initial=0.0)) <= ZERO_OUTPUT_ATOL else float("-inf")
    top1 = None
    if _is_classifier(ref):
        top1 = float(np.mean(np.argmax(ref64, axis=1) == np.argmax(got64, axis=1)))
    return OutputMetrics(name, tuple(ref.shape), float(np.mean(cos)), float(np.min(cos)),
                         float(np.max(np.abs(err))), snr, 0, top1)


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    denom = np.where(na * nb == 0, 1.0, na * nb)
    cos = np.sum(a * b, axis=1) / denom
    return np.where(both_zero, 1.0, cos)


def _is_classifier(ref: np.ndarray) -> bool:
    return ref.ndim == 2 and ref.shape[1] > 1


def label_accuracy(logits: np.ndarray, labels: np.ndarray) -> float | None:
    if logits.ndim != 2 or logits.shape[1] <= 1 or len(logits) != len(labels):
        return None
    if not np.all(np.isfinite(logits)):
        return 0.0
    return float(np.mean(np.argmax(logits, axis=1) == labels))
