"""Compression recipes: a TOML file that chains passes, validated before any work starts.

    seed = 0                      # optional
    [[pass]]
    kind = "prune"
    criterion = "magnitude"
    amount = 0.5
    structured = true

    [[pass]]
    kind = "distill"
    mode = "soft"
    temperature = 4.0
    alpha = 0.7
    epochs = 10
    lr = 1e-3

Every mistake is one line naming the pass and key: unknown keys get the closest known key as a
suggestion, bad values get what is allowed. Orderings that would silently undo an earlier pass
(anything after `cluster`, structural changes after unstructured sparsity) are refused here.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.compress.distill import HARD_TARGETS, MODES
from edgeport.compress.lowrank import KINDS as LOWRANK_KINDS
from edgeport.compress.prune import CRITERIA, SCOPES, STATISTICS, TARGETS
from edgeport.errors import InputError


@dataclass(frozen=True)
class Opt:
    type: str  # bool | int | float | str | list
    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    allowed: str = ""  # what to tell the user when `check` fails

    def describe(self) -> str:
        if self.choices:
            return "one of: " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        return self.allowed or {"bool": "true or false", "int": "an integer", "float": "a number",
                                "str": "a string", "list": "a list of strings, e.g. [\"features.0*\"]"}[self.type]


def _frac(lo_open: bool, hi_open: bool) -> Callable[[float], bool]:
    return lambda v: (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)


_PATTERNS = {"layers": Opt("list", []), "skip": Opt("list", [])}
SCHEMA: dict[str, dict[str, Opt]] = {
    "prune": {
        "criterion": Opt("str", "magnitude", CRITERIA),
        "amount": Opt("float", 0.5, check=_frac(False, True), allowed="a fraction 0 <= amount < 1, e.g. 0.5"),
        "structured": Opt("bool", True),
        "scope": Opt("str", "layer", SCOPES),
        "norm": Opt("int", 2, (1, 2)),
        "statistic": Opt("str", "entropy", STATISTICS),
        "target": Opt("str", "auto", TARGETS),
        "round_to": Opt("int", 1, check=lambda v: 1 <= v <= 64, allowed="an integer 1..64 (e.g. 4 or 8)"),
        "min_channels": Opt("int", 1, check=lambda v: v >= 1, allowed="an integer >= 1"),
        "samples": Opt("int", 256, check=lambda v: v >= 1, allowed="an integer >= 1 (calibration samples scored)"),
        "compensate": Opt("bool", True),
        "recalibrate_bn": Opt("bool", True),
        **_PATTERNS,
    },
    "lowrank": {
        "energy": Opt("float", 0.9, check=_frac(True, False), allowed="a fraction 0 < energy <= 1, e.g. 0.9"),
        "param_budget": Opt("float", None, check=_frac(True, False),
                            allowed="a fraction 0 < param_budget <= 1 of the factorizable layers' parameters"),
        "kinds": Opt("str", "all", LOWRANK_KINDS),
        "min_rank": Opt("int", 1, check=lambda v: v >= 1, allowed="an integer >= 1"),
        **_PATTERNS,
    },
    "cluster": {
        "clusters": Opt("int", 16, check=lambda v: 2 <= v <= 65536, allowed="an integer 2..65536, e.g. 16"),
        "iterations": Opt("int", 30, check=lambda v: 1 <= v <= 1000, allowed="an integer 1..1000"),
        **_PATTERNS,
    },
    "distill": {
        "mode": Opt("str", "soft", MODES),
        "temperature": Opt("float", 4.0, check=lambda v: v > 0, allowed="a number > 0, e.g. 4.0"),
        "alpha": Opt("float", 0.7, check=_frac(False, False), allowed="a fraction 0 <= alpha <= 1 (weight of the soft term)"),
        "epochs": Opt("int", 10, check=lambda v: 1 <= v <= 10000, allowed="an integer >= 1"),
        "lr": Opt("float", 1e-3, check=lambda v: 0 < v < 10, allowed="a learning rate > 0, e.g. 1e-3"),
        "batch_size": Opt("int", 64, check=lambda v: v >= 1, allowed="an integer >= 1"),
        "weight_decay": Opt("float", 0.0, check=lambda v: v >= 0, allowed="a number >= 0"),
        "hard_target": Opt("str", "auto", HARD_TARGETS),
        "shift": Opt("int", 0, check=lambda v: 0 <= v <= 64, allowed="an integer 0..64 (random shift augmentation, pixels)"),
        "samples": Opt("int", None, check=lambda v: v >= 1, allowed="an integer >= 1 (training samples used)"),
    },
}
TOP_LEVEL = {"pass": Opt("list", None), "seed": Opt("int", 0), "description": Opt("str", "")}
STRUCTURAL = ("prune-structured", "lowrank")


@dataclass(frozen=True)
class PassSpec:
    kind: str
    index: int  # 1-based, as users count
    params: dict[str, Any]

    @property
    def label(self) -> str:
        if self.kind == "prune":
            return f"prune-{'structured' if self.params['structured'] else 'unstructured'}"
        return self.kind

    @property
    def needs_module(self) -> bool:
        """Passes that rebuild layers need a Python nn.Module (TorchScript layers cannot be replaced)."""
        return self.label in STRUCTURAL


@dataclass(frozen=True)
class Recipe:
    passes: list[PassSpec]
    seed: int = 0
    description: str = ""
    source: str = "<recipe>"
    sha256: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "seed": self.seed, "description": self.description,
                "passes": [{"kind": p.kind, **p.params} for p in self.passes]}


def load_recipe(path: str | Path) -> Recipe:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"recipe '{p}' does not exist", hint="pass a TOML file with [[pass]] tables") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"recipe '{p}' cannot be read ({exc})", hint="pass a UTF-8 TOML file") from None
    return parse_recipe(text, str(p))


def parse_recipe(text: str, source: str = "<recipe>") -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ("write one key = value per line: TOML has no ';' separator" if ";" in text
                else "see the recipe format: [[pass]] tables with kind = \"prune\" | \"lowrank\" | \"cluster\" | \"distill\"")
        raise InputError(f"recipe '{source}' is not valid TOML ({exc})", hint=hint) from None
    where = f"recipe '{source}'"
    for key in data:
        if key not in TOP_LEVEL:
            raise _unknown(where, key, TOP_LEVEL, "top-level keys")
    seed = _value(where, "seed", data.get("seed", 0), TOP_LEVEL["seed"])
    description = _value(where, "description", data.get("description", ""), TOP_LEVEL["description"])
    tables = data.get("pass")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise InputError(f"{where} has no passes", hint="add at least one [[pass]] table with kind = \"prune\", \"lowrank\", \"cluster\" or \"distill\"")
    passes = [_parse_pass(where, i, table) for i, table in enumerate(tables, start=1)]
    _check_order(where, passes)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Recipe(passes, seed, description, source, digest)


def _parse_pass(where: str, index: int, table: dict[str, Any]) -> PassSpec:
    kind = table.get("kind")
    if kind is None:
        raise InputError(f"{where} pass {index} has no 'kind'", hint=f"add kind = one of: {', '.join(SCHEMA)}")
    if kind not in SCHEMA:
        close = difflib.get_close_matches(str(kind), list(SCHEMA), n=1)
        raise InputError(f"{where} pass {index}: kind = {kind!r} is not known",
                         hint=(f"did you mean {close[0]!r}? " if close else "") + f"kinds: {', '.join(SCHEMA)}")
    schema = SCHEMA[kind]
    ctx = f"{where} pass {index} ({kind})"
    params = {}
    for key, value in table.items():
        if key == "kind":
            continue
        if key not in schema:
            raise _unknown(ctx, key, schema, f"keys for {kind}")
        params[key] = _value(ctx, key, value, schema[key])
    for key, opt in schema.items():
        params.setdefault(key, list(opt.default) if isinstance(opt.default, list) else opt.default)
    if kind == "prune" and not params["structured"] and params["criterion"] == "entropy":
        raise InputError(f"{ctx}: criterion = \"entropy\" ranks whole channels, so it needs structured = true",
                         hint="use criterion = \"magnitude\" or \"gradient\" for unstructured sparsity")
    return PassSpec(kind, index, params)


def _unknown(ctx: str, key: str, schema: dict[str, Any], what: str) -> InputError:
    close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.5)
    hint = (f"did you mean {close[0]!r}? " if close else "") + f"{what}: {', '.join(schema)}"
    return InputError(f"{ctx}: unknown key {key!r}", hint=hint)


def _value(ctx: str, key: str, value: Any, opt: Opt) -> Any:
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "list": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[opt.type]
    if ok and opt.type == "float":
        value = float(value)
    if ok and opt.choices is not None:
        ok = value in opt.choices
    if ok and opt.check is not None:
        ok = bool(opt.check(value))
    if not ok:
        shown = f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value)
        raise InputError(f"{ctx}: {key} = {shown} is not allowed", hint=f"use {opt.describe()}")
    return value


def _check_order(where: str, passes: list[PassSpec]) -> None:
    for i, p in enumerate(passes):
        later = passes[i + 1 :]
        if p.kind == "cluster" and later:
            raise InputError(f"{where}: pass {later[0].index} ({later[0].kind}) comes after cluster (pass {p.index}) "
                             "and would undo the weight sharing", hint="make cluster the last pass")
        if p.label == "prune-unstructured":
            rebuild = next((q for q in later if q.needs_module), None)
            if rebuild is not None:
                raise InputError(f"{where}: pass {rebuild.index} ({rebuild.label}) rebuilds the layers that pass {p.index} "
                                 "made sparse", hint="put unstructured pruning after structured pruning and lowrank")
