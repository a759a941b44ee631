"""The budget both searches ask about: what "meets the accuracy budget" means, and one number to rank by.

budget_for turns the profile's budgets into the searches' budget. fits and metric judge one scored
candidate (a dict with ok, task_ok/task, accuracy, top1, snr_db): with a task judged by its own metric
(ctc, detect, embed, segment), that metric and its floor decide; else, with labels and a classifier,
the label-accuracy drop in percentage points; else top-1 agreement with the reference; else the worst
output's SNR. A candidate that aborts or writes non-finite outputs never fits. The converter search
scores candidates in its worker; accept_for is the same question as a real TFLite run, for the AEQ search.
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


def budget_for(profile_budgets: Any, references: list[np.ndarray], labels: np.ndarray | None,
               task: Any = None) -> dict[str, Any]:
    """The searches' accuracy budget. With a task judged by its own metric (ctc, detect, embed, segment),
    that metric and the profile's floor for it are the objective (validate/task_score.objective)."""
    ref_acc = None
    ref = references[0]
    if labels is not None and ref.ndim == 2 and ref.shape[1] > 1:
        ref_acc = float(np.mean(np.argmax(ref, 1) == labels))
    return {
        "reference_accuracy": ref_acc,
        "accuracy_drop_pp": profile_budgets.accuracy_drop_pp if profile_budgets.accuracy_drop_pp is not None else 1.0,
        "min_top1_agreement": profile_budgets.min_top1_agreement,
        "min_snr_db": profile_budgets.min_snr_db,
        **_task_budget(profile_budgets, task),
    }


def _task_budget(profile_budgets: Any, task: Any) -> dict[str, Any]:
    floor = profile_budgets.task_minimum(task.name) if task is not None else None
    if floor is None:
        return {}
    return {"task": {"name": task.name, "options": dict(task.options)}, "task_min": floor}


def fits(score: Mapping[str, Any], budget: Mapping[str, Any]) -> bool:
    """Whether a scored candidate meets the budget."""
    if not score["ok"]:
        return False
    if "task_ok" in score:
        return bool(score["task_ok"])
    if budget.get("reference_accuracy") is not None and score.get("accuracy") is not None:
        return (budget["reference_accuracy"] - score["accuracy"]) * 100 <= budget["accuracy_drop_pp"] + 1e-9
    if score.get("top1") is not None and budget.get("min_top1_agreement") is not None:
        return score["top1"] >= budget["min_top1_agreement"]
    return score.get("snr_db") is not None and score["snr_db"] >= (budget.get("min_snr_db") or 20.0)


def metric(score: Mapping[str, Any], snr_scale: float = 0.01) -> float:
    """One number to rank by (higher is better): the task metric, else label accuracy, else top-1
    agreement, else the SNR times snr_scale (the converter search keeps SNR below the fractions)."""
    for key in ("task", "accuracy", "top1"):
        if score.get(key) is not None:
            return float(score[key])
    return float(score["snr_db"]) * snr_scale if score.get("snr_db") is not None else -1.0


def accept_for(val_inputs: Mapping[str, np.ndarray], input_map: Mapping[str, Mapping[str, Any]],
               references: list[np.ndarray], labels: np.ndarray | None, budget: Mapping[str, Any], threads: int):
    """accept(path) -> (meets the budget, metric): the model runs in a child process (run_tflite), so a
    kernel abort is a failed candidate. budget: budget_for(...)."""
    ref0 = references[0]
    classifier = ref0.ndim == 2 and ref0.shape[1] > 1

    def accept(path: Path) -> tuple[bool, float]:
        run = run_tflite(Path(path), dict(val_inputs), dict(input_map), references, threads=threads, runs=0)
        if run.outputs is None:
            return False, -math.inf
        metrics = [compare_output(f"output_{i}", r, o) for i, (r, o) in enumerate(zip(references, run.outputs, strict=True))]
        if any(m.nonfinite for m in metrics):
            return False, -math.inf
        # only the figure that decides is in the score, so fits and metric ask about that one
        score: dict[str, Any] = {"ok": True, "snr_db": min(m.snr_db for m in metrics), "accuracy": None, "top1": None}
        task = objective(budget, references, run.outputs, labels)
        if task is not None:
            score["task_ok"], score["task"] = task
        elif classifier and labels is not None and budget.get("reference_accuracy") is not None:
            score["accuracy"] = float(np.mean(np.argmax(run.outputs[0], 1) == labels))
        elif classifier and budget.get("min_top1_agreement") is not None:
            score["top1"] = float(metrics[0].top1_agreement or 0.0)
        return fits(score, budget), metric(score, snr_scale=1.0)

    return accept
