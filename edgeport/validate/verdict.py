"""Budgets become checks {name, value, budget, passed}; a stage result never judges itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    value: Any
    budget: Any
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "value": self.value, "budget": self.budget, "passed": self.passed}
        if self.detail:
            out["detail"] = self.detail
        return out


def at_most(name: str, value: float | None, budget: float | None, detail: str = "") -> Check | None:
    """None when there is no budget; an unmeasured value against a budget fails (never passes silently)."""
    if budget is None:
        return None
    ok = value is not None and value == value and value <= budget
    return Check(name, value, budget, bool(ok), detail or ("not measured" if value is None else ""))


def at_least(name: str, value: float | None, budget: float | None, detail: str = "") -> Check | None:
    if budget is None:
        return None
    ok = value is not None and value == value and value >= budget
    return Check(name, value, budget, bool(ok), detail or ("not measured" if value is None else ""))


def must(name: str, ok: bool, value: Any, detail: str = "") -> Check:
    return Check(name, value, True, bool(ok), detail)


def decide(checks: list[Check | None]) -> dict[str, Any]:
    real = [c for c in checks if c is not None]
    return {"passed": bool(real) and all(c.passed for c in real), "checks": [c.to_dict() for c in real]}
