"""`--exporter auto` weighs exporters by what each one gives, not only by whether it converts.

`select.export` converts with one exporter after another. This module holds the evidence of one
attempt and the rule that decides; it is pure (no I/O), so each rule has a fast test with fakes.

- An attempt *settles* the choice, and no further exporter is tried, when its float32 model matches
  the reference and its artifact (the file for the requested --quant) runs and meets the profile's
  accuracy budget (the verdict's own checks: runs on the data, under XNNPACK, drop / agreement / SNR),
  and, for a fallback exporter, is an answer (below).
- Otherwise the next exporter is tried (auto only). Among the attempts that gave an artifact, the
  kept one is, in this order: one that runs; an answer; one whose float32 model matches the
  reference; one that meets the budget; then the higher worst-output cosine, then the higher top-1
  agreement (closer than COSINE_STEP / AGREEMENT_STEP counts as equal); then the exporter tried first.
- A fallback's artifact is *no answer* when it is larger than its own float32 file (quantization
  bought nothing) or its worst-output cosine is far (FAR_BELOW_COSINE) below the float32 agreement
  of the first exporter that converted. It is kept only when nothing else runs, and then the
  verdict fails (`fallback_exporter_is_an_answer`, added by the pipeline) saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from edgeport.validate.judge import TASK_CHECKS

# The verdict checks (validate/judge.py) that decide whether an artifact "works": it runs on the
# validation data, under XNNPACK, and meets the accuracy budgets. Size and latency are not weighed.
ACCURACY_CHECKS = ("runs_on_validation_data", "runs_under_xnnpack", "accuracy_drop_pp", "top1_agreement", "snr_db",
                   *TASK_CHECKS)
FAR_BELOW_COSINE = 0.1  # a worst-output cosine this far below the float agreement is a broken model, not a coarse one
# Closer than these steps two artifacts agree equally well: the exporter tried first keeps a tie (two int8
# files of one CNN differed by 1e-11 in cosine, which once sent the choice to the fallback). A margin, not
# rounding, so two values either side of a rounding edge are still a tie.
COSINE_STEP, AGREEMENT_STEP = 1e-4, 1e-3
STEPS = {"cosine": COSINE_STEP, "top1_agreement": AGREEMENT_STEP}
ANSWER_CHECK = "fallback_exporter_is_an_answer"


@dataclass(frozen=True)
class ArtifactCheck:
    """One exporter's artifact validated as the report validates it (same run, same budget checks)."""

    key: str  # the mode of the file ("int8", "fp16", ...)
    size_bytes: int
    fp32_size_bytes: int
    ran: bool  # produced outputs on the validation data
    runtime_error: str | None = None  # the runtime's failure, or XNNPACK's refusal when builtin kernels ran instead
    mismatch: str | None = None  # outputs that do not fit the reference (count or shape)
    cosine: float | None = None  # the worst output's mean cosine (report accuracy.cosine_mean)
    top1_agreement: float | None = None
    snr_db: float | None = None
    drop_pp: float | None = None
    failed: tuple[str, ...] = ()  # ACCURACY_CHECKS it fails, "name: value vs budget (detail)"
    run: Any = field(default=None, compare=False, repr=False)  # the TfliteRun the report uses when this is kept
    xnnpack: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    task: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # report accuracy.task for this file

    @property
    def meets_budget(self) -> bool:
        return self.ran and self.mismatch is None and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.key, "size_bytes": self.size_bytes, "fp32_size_bytes": self.fp32_size_bytes,
                "size_vs_fp32": round(self.size_bytes / self.fp32_size_bytes, 4) if self.fp32_size_bytes else None,
                "ran": self.ran, "runtime_error": self.runtime_error, "cosine_mean": self.cosine,
                "top1_agreement": self.top1_agreement, "snr_db": self.snr_db, "drop_pp": self.drop_pp,
                "meets_budget": self.meets_budget, "failed_checks": list(self.failed),
                **({"task_metric": {k: self.task.get(k) for k in ("task", "metric", "value")}} if self.task else {})}


@dataclass(frozen=True)
class Attempt:
    backend: str
    converted: bool
    float_matches: bool | None = None
    cosine_min: float | None = None  # the float32 model against the reference
    error: str | None = None  # why it did not convert, or why it was rejected (mismatch), or the runtime error
    mismatch: str | None = None  # float32 model or artifact whose outputs do not fit the reference: rejected
    artifact: ArtifactCheck | None = None  # None when the artifact is judged later (--quant mixed, --diagnose)
    objection: str | None = None  # a fallback's artifact that is no answer, and why
    kept: bool = False
    why: str | None = None

    @property
    def usable(self) -> bool:
        return self.converted and self.mismatch is None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "converted": self.converted, "float_matches": self.float_matches,
                "cosine_min": self.cosine_min, "error": self.error,
                "artifact": self.artifact.to_dict() if self.artifact is not None else None,
                "kept": self.kept, "why": self.why}


def objection(art: ArtifactCheck, float_cosine: float | None, float_source: str | None) -> str | None:
    """Why a fallback exporter's artifact is no answer at all (None: it is one). A model that does not
    run is judged as such, not here."""
    if not art.ran or art.mismatch is not None:
        return None
    if art.key != "fp32" and art.fp32_size_bytes and art.size_bytes > art.fp32_size_bytes:
        return (f"{art.key} model is larger than its float32 model "
                f"({art.size_bytes} bytes, {art.size_bytes / art.fp32_size_bytes:.0%} of {art.fp32_size_bytes})")
    if float_cosine is not None and _num(art.cosine) < float_cosine - FAR_BELOW_COSINE:
        return (f"{art.key} model's worst-output cosine {_fmt(art.cosine)} is far below the float32 agreement "
                f"{_fmt(float_cosine)} of {float_source}")
    return None


def settles(a: Attempt) -> bool:
    """Good enough to stop trying exporters."""
    if not a.usable or not a.float_matches:
        return False
    return a.artifact is None or (a.artifact.meets_budget and a.objection is None)


def _standing(a: Attempt) -> tuple[bool, bool, bool, bool]:
    """The yes/no rules, most important first (module doc)."""
    art = a.artifact
    if art is None:
        return (True, True, bool(a.float_matches), True)
    return (art.ran, a.objection is None, bool(a.float_matches), art.meets_budget)


def beats(challenger: Attempt, holder: Attempt) -> bool:
    """Whether a later attempt displaces the one kept so far: the yes/no rules, then a higher
    worst-output cosine, then a higher top-1 agreement, each by more than its step; a tie keeps the
    holder, the exporter tried first."""
    if _standing(challenger) != _standing(holder):
        return _standing(challenger) > _standing(holder)
    ca, ha = challenger.artifact, holder.artifact
    if ca is None or ha is None:
        return False
    for value in ("cosine", "top1_agreement"):
        order = _compare(getattr(ca, value), getattr(ha, value), STEPS[value])
        if order:
            return order > 0
    return False


def best(attempts: list[Attempt], indices: list[int]) -> int | None:
    """The attempt to keep among `indices` (in the order tried): each one displaces the kept one only if it beats it."""
    kept = None
    for i in indices:
        if kept is None or beats(attempts[i], attempts[kept]):
            kept = i
    return kept


def shortfalls(a: Attempt) -> list[str]:
    """What kept a converted attempt from settling the choice."""
    art = a.artifact
    found = []
    if not a.float_matches:
        found.append(f"its float32 model disagrees with the reference (min cosine {_fmt(a.cosine_min)})")
    if art is not None and not art.ran:
        found.append(f"its {art.key} model fails at run time ({art.runtime_error})")
    elif art is not None and art.failed:
        found.append(f"its {art.key} model misses the budget ({'; '.join(art.failed)})")
    if a.objection:
        found.append(f"it is no answer: its {a.objection}")
    return found


def describe(a: Attempt) -> str:
    """One attempt that did not settle the choice, as a clause naming its exporter."""
    if not a.converted:
        return f"{a.backend} failed: {a.error}"
    if a.mismatch is not None:
        return f"{a.backend} rejected: {a.mismatch}"
    return f"{a.backend}: {', and '.join(shortfalls(a))}"


def merit(a: Attempt) -> str:
    """What a settled attempt showed."""
    text = "its float32 model matches the reference"
    if a.artifact is not None:
        text += f" and its {a.artifact.key} model meets the accuracy budget" if a.artifact.key != "fp32" else \
            " and meets the accuracy budget"
    return text


def preference(kept: Attempt, other: Attempt) -> str:
    """Why `kept` won over `other`: the first rule (module doc, `beats`) that separates them."""
    ka, oa = kept.artifact, other.artifact
    mine, theirs = _standing(kept), _standing(other)
    if mine != theirs:
        rule = next(i for i, (m, t) in enumerate(zip(mine, theirs, strict=True)) if m != t)
        key = ka.key if ka is not None else "float32"
        return (f"its {key} model runs and {other.backend}'s does not", f"{other.backend}'s is no answer",
                "its float32 model matches the reference", f"its {key} model meets the accuracy budget")[rule]
    if ka is not None and oa is not None:
        if _compare(ka.cosine, oa.cosine, COSINE_STEP):
            return f"higher worst-output cosine ({_fmt(ka.cosine)} vs {_fmt(oa.cosine)} for {other.backend})"
        if _compare(ka.top1_agreement, oa.top1_agreement, AGREEMENT_STEP):
            return f"higher top-1 agreement ({_fmt(ka.top1_agreement)} vs {_fmt(oa.top1_agreement)} for {other.backend})"
    return f"{other.backend} did no better and it was tried first"


def explain(attempts: list[Attempt], kept: int) -> list[Attempt]:
    """Every attempt with `kept` and `why` filled in."""
    winner = attempts[kept]
    runner_up = best(attempts, [i for i, a in enumerate(attempts) if a.usable and i != kept])
    out = []
    for i, a in enumerate(attempts):
        if i == kept:
            if settles(a):
                why = f"kept: {merit(a)}"
            else:
                lead = preference(a, attempts[runner_up]) if runner_up is not None else "the only exporter that gave a model"
                why = f"kept: {lead}, although {', and '.join(shortfalls(a))}"
        elif not a.converted:
            why = "not kept: it did not convert"
        elif a.mismatch is not None:
            why = f"not kept: rejected, {a.mismatch}"
        else:  # it did not settle the choice (else no later attempt exists), so it has shortfalls
            why = f"not kept: {', and '.join(shortfalls(a)) or f'ranked below {winner.backend}'}"
        out.append(replace(a, kept=i == kept, why=why))
    return out


def _compare(a: float | None, b: float | None, step: float) -> int:
    """1 / -1 when a is higher / lower than b by more than `step`, else 0 (a tie). Unmeasured is lowest."""
    x, y = _num(a), _num(b)
    if x == y or (not math.isinf(x) and not math.isinf(y) and abs(x - y) <= step):
        return 0
    return 1 if x > y else -1


def _num(value: float | None) -> float:
    return -math.inf if value is None or value != value else float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"
