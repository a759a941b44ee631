"""The pieces `--quant mixed` needs around edgeport.quantize.mixed_aeq: data in TFLite layout, and the
budget check (`accept`) as a real TFLite run on validation data.

The budget semantics are those of edgeport.quantize.mixed.budget_for: with labels and a classifier,
the label-accuracy drop in percentage points; else top-1 agreement with the reference; else the worst
output's SNR. A model that aborts or writes non-finite outputs misses the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.validate.metrics import compare_output
from edgeport.validate.run import run_tflite
from edgeport.validate.task_score import objective


def accept_for(val_inputs: Mapping[str, np.ndarray], input_map: Mapping[str, Mapping[str, Any]],
               references: list[np.ndarray], labels: np.ndarray | None, budget: Mapping[str, Any], threads: int):
    """accept(path) -> (meets the budget, metric): the model runs in a child process (run_tflite), so a
    kernel abort is a failed candidate. budget: mixed.budget_for(...)."""
    ref0 = references[0]
    classifier = ref0.ndim == 2 and ref0.shape[1] > 1

    def accept(path: Path) -> tuple[bool, float]:
        run = run_tflite(Path(path), dict(val_inputs), dict(input_map), references, threads=threads, runs=0)
        if run.outputs is None:
            return False, -math.inf
        metrics = [compare_output(f"output_{i}", r, o) for i, (r, o) in enumerate(zip(references, run.outputs, strict=True))]
        if any(m.nonfinite for m in metrics):
            return False, -math.inf
        task = objective(budget, references, run.outputs, labels)
        if task is not None:
            return task
        if classifier and labels is not None and budget.get("reference_accuracy") is not None:
            acc = float(np.mean(np.argmax(run.outputs[0], 1) == labels))
            return (budget["reference_accuracy"] - acc) * 100 <= budget["accuracy_drop_pp"] + 1e-9, acc
        if classifier and budget.get("min_top1_agreement") is not None:
            top1 = float(metrics[0].top1_agreement or 0.0)
            return top1 >= budget["min_top1_agreement"], top1
        worst = min(m.snr_db for m in metrics)
        return worst >= (budget.get("min_snr_db") or 20.0), worst

    return accept
