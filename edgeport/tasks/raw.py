"""No task signature: today's judgement, SNR and cosine of each raw output against float."""

from __future__ import annotations

import numpy as np

from edgeport.tasks.spec import TaskScore, TaskSpec


def score(spec: TaskSpec, refs: list[np.ndarray], outs: list[np.ndarray], labels: object | None) -> TaskScore:
    from edgeport.validate.metrics import compare_output  # validate imports the tasks: import late

    found = [compare_output(f"output_{i}", r, o) for i, (r, o) in enumerate(zip(refs, outs, strict=True))]
    return TaskScore("raw", "snr_db", float(min(m.snr_db for m in found)),
                     {"cosine_mean": float(min(m.cosine_mean for m in found)), "outputs": len(found)})
