"""PLAN.toml -> validated cells (model x profile x mode), each with the key that decides resume.

Everything a cell needs is checked here, before any conversion starts: a bad entry fails the whole
plan with one InputError line that names the entry (`models[2].calib`), never a half-run sweep.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeport.convert_options import BY_PLAN_KEY, PLAN_OWN_KEYS, plan_value
from edgeport.errors import EdgeportError, InputError
from edgeport.modes import MODES

SWEEP_KEYS = {"output", "shared_dir", "runs", "timeout_s", "cpus_per_cell", "memory_gb_per_cell", "workers"}
# Every convert option a plan takes comes from the convert parser's own table (edgeport/convert_options.py).
MODEL_KEYS = {"name", *BY_PLAN_KEY}
# Top level: the sweep table, the models, and a default for every model option but its name and checkpoint.
DEFAULT_KEYS = MODEL_KEYS - {"name", "checkpoint"}
PLAN_KEYS = {"sweep", "models", *DEFAULT_KEYS}
# Variables a cell's worker process must see as the driver does: the host-fit mode and cache decide the
# simulated latency, PYTHONPATH decides where --model-class modules are found.
FORWARDED_ENV = ("EDGEPORT_HOST_FIT", "EDGEPORT_CACHE_DIR", "EDGEPORT_PROFILES_DIR", "EDGEPORT_MIXED_WORKERS", "PYTHONPATH")
_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Cell:
    """One full convert: its own artifact and report under cells/<id>/."""

    id: str
    model: str
    profile: str          # as written in the plan (name or absolute path)
    mode: str
    request: dict[str, Any]  # ConvertRequest fields (paths as strings), output excluded
    key: str = ""


@dataclass(frozen=True)
class Plan:
    path: Path
    cells: list[Cell]
    output: Path | None
    shared_dir: Path | None
    timeout_s: float
    cpus_per_cell: float
    memory_gb_per_cell: float
    workers: int | None
    env: dict[str, str] = field(default_factory=dict)


def _bad(where: str, what: str, hint: str) -> InputError:
    return InputError(f"plan entry {where}: {what}", hint=hint)


def _strs(value: Any, where: str, example: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad(where, "must be a non-empty list of strings", f"e.g. {where.split('.')[-1]} = {example}")
    return list(dict.fromkeys(v.strip() for v in value))


def _number(table: dict[str, Any], key: str, default: float, where: str, *, minimum: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise _bad(f"{where}.{key}", f"{value!r} must be a number >= {minimum}", f"e.g. {key} = {default}")
    return float(value)


def load_plan(path: Path, *, output: Path | None = None) -> Plan:
    """Parse and validate a plan; raises InputError (exit 2) naming the first bad entry."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"plan '{path}' not found", hint="pass the path of a PLAN.toml (see README 'Sweeps')") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"plan '{path}' is not readable text ({exc})", hint="save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"plan '{path}' is not valid TOML: {exc}", hint="fix the syntax at that line") from None
    base = path.resolve().parent
    unknown = sorted(set(raw) - PLAN_KEYS)
    if unknown:
        raise _bad(unknown[0], "is not a plan key", f"top-level keys are: {', '.join(sorted(PLAN_KEYS))}")
    sweep = raw.get("sweep", {})
    if not isinstance(sweep, dict):
        raise _bad("sweep", "must be a table", "write [sweep] with output, runs, timeout_s ...")
    bad = sorted(set(sweep) - SWEEP_KEYS)
    if bad:
        raise _bad(f"sweep.{bad[0]}", "is not a sweep option", f"options are: {', '.join(sorted(SWEEP_KEYS))}")
    runs = int(_number(sweep, "runs", 20, "sweep", minimum=0))
    models = raw.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, dict) for m in models):
        raise _bad("models", "the plan lists no models", "add [[models]] tables with checkpoint, calib, ...")
    defaults = {k: v for k, v in raw.items() if k in DEFAULT_KEYS}
    cells: list[Cell] = []
    names: set[str] = set()
    for i, entry in enumerate(models):
        cells.extend(_model_cells(entry, i, base, defaults, runs, names))
    ids = [c.id for c in cells]
    dup = next((x for x in ids if ids.count(x) > 1), None)
    if dup:
        raise _bad("models", f"two cells share the id '{dup}'", "give the models distinct names")
    workers = sweep.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise _bad("sweep.workers", f"{workers!r} must be a whole number >= 1", "e.g. workers = 2, or leave it out")
    out = output or (Path(base, sweep["output"]) if isinstance(sweep.get("output"), str) else Path("edgeport-sweep"))
    shared = sweep.get("shared_dir")
    if shared is not None and not isinstance(shared, str):
        raise _bad("sweep.shared_dir", "must be a path string", 'e.g. shared_dir = "/mnt/shared/sweep"')
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    cpus = _number(sweep, "cpus_per_cell", 1, "sweep", minimum=0.1)
    # A mixed-search cell scores its candidates on as many processes as the CPUs it declared (the
    # pool or Ray reserved them for it); see edgeport/quantize/search/fanout.py.
    env.setdefault("EDGEPORT_MIXED_WORKERS", str(max(1, int(cpus))))
    # Each convert uses the CPUs it declared, as Ray already enforces for its tasks: without this a
    # local pool of N cells runs N x cores threads (torch, oneDNN) and every cell slows down.
    env["OMP_NUM_THREADS"] = str(max(1, int(cpus)))
    return Plan(path=path, cells=cells, output=out, shared_dir=Path(base, shared) if shared else None,
                timeout_s=_number(sweep, "timeout_s", 3600, "sweep", minimum=1),
                cpus_per_cell=cpus,
                memory_gb_per_cell=_number(sweep, "memory_gb_per_cell", 2.0, "sweep", minimum=0.1),
                workers=workers, env=env)


def _model_cells(entry: dict[str, Any], i: int, base: Path, defaults: dict[str, Any], runs: int,
                 names: set[str]) -> list[Cell]:
    from edgeport.profiles import check_quant_allowed, load_profile

    where = f"models[{i}]"
    bad = sorted(set(entry) - MODEL_KEYS)
    if bad:
        raise _bad(f"{where}.{bad[0]}", "is not a model option", f"options are: {', '.join(sorted(MODEL_KEYS))}")
    ckpt = entry.get("checkpoint")
    if not isinstance(ckpt, str) or not ckpt:
        raise _bad(f"{where}.checkpoint", "is missing", 'e.g. checkpoint = "models/net.pt" (relative to the plan)')
    ckpt_path = Path(base, ckpt).expanduser()
    if not ckpt_path.is_file():
        raise _bad(f"{where}.checkpoint", f"'{ckpt}' is not a file", "paths are relative to the plan file")
    name = entry.get("name", ckpt_path.name.split(".")[0])
    if not isinstance(name, str) or not _ID_RE.sub("", name):
        raise _bad(f"{where}.name", f"{name!r} is not a usable name", 'e.g. name = "digits"')
    if name in names:
        raise _bad(f"{where}.name", f"'{name}' is used by an earlier model", "give each model its own name")
    names.add(name)
    where = f"models[{i}] ({name})"
    merged = {**defaults, **entry}

    def loc(key: str) -> str:
        return f"{where}.{key}" + ("" if key in entry else " (the plan's top-level default)")

    req: dict[str, Any] = {"checkpoint": str(ckpt_path), "runs": runs}
    for key, value in merged.items():
        opt = BY_PLAN_KEY.get(key)
        if opt is None or key in PLAN_OWN_KEYS:
            continue
        try:
            req[opt.field] = plan_value(opt, value, base)
        except EdgeportError as exc:
            raise _bad(loc(key), exc.message, exc.hint or "") from None
    for role in ("calib", "val"):
        spec = merged.get(role)
        if spec is None:
            continue
        if not isinstance(spec, str):
            raise _bad(loc(role), "must be a string", f'e.g. {role} = "data/{role}.npz" or "builtin:digits"')
        req[role] = _data_spec(spec, base, loc(role))
    profiles = _strs(merged.get("profiles"), loc("profiles"), '["host", "raspberry-pi-4"]')
    modes = merged.get("modes")
    mode_list = None if modes is None else _strs(modes, loc("modes"), '["int8", "fp16"]')
    quant = BY_PLAN_KEY["modes"].kwargs["choices"]
    cells = []
    for prof_text in profiles:
        prof_arg = str(Path(base, prof_text)) if prof_text.endswith(".toml") else prof_text
        try:
            prof = load_profile(prof_arg)
        except EdgeportError as exc:
            raise _bad(loc("profiles"), exc.one_line(), "use a name from 'edgeport profiles' or a .toml path") from None
        for mode in mode_list or [prof.runtime.default_quant]:
            try:
                if mode not in quant or mode in MODES:  # `auto` is a choice of convert, not a mode to check
                    check_quant_allowed(prof, mode)
            except EdgeportError as exc:
                raise _bad(loc("modes"), exc.message, exc.hint or "") from None
            if mode in MODES and MODES[mode].calibrated and "calib" not in req:
                raise _bad(f"{where}.calib", f"mode {mode} needs calibration data", 'add calib = "data.npz" or builtin:NAME')
            cell_id = _ID_RE.sub("-", f"{name}__{prof.name}__{mode}")
            cells.append(Cell(id=cell_id, model=name, profile=prof.name, mode=mode,
                              request={**req, "profile": prof_arg, "quant": mode}))
    return cells


def _data_spec(spec: str, base: Path, where: str) -> str:
    if spec.startswith("builtin:"):
        from edgeport.data.calibration import builtin_names

        if spec.removeprefix("builtin:") not in builtin_names():
            raise _bad(where, f"unknown built-in data '{spec}'",
                       f"available: {', '.join('builtin:' + n for n in builtin_names()) or 'none'}")
        return spec
    path = Path(base, spec).expanduser()
    if not path.exists():
        raise _bad(where, f"'{spec}' does not exist", "paths are relative to the plan file")
    return str(path)


# ------------------------------------------------------------------------------------------ keys


def _file_sha(path: Path, h: Any) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def content_sha256(spec: str | None) -> str | None:
    """Hash of what a path or builtin:NAME spec holds (a folder: every file's name and bytes)."""
    if spec is None:
        return None
    h = hashlib.sha256()
    if spec.startswith("builtin:"):
        from edgeport.data.calibration import DATA_DIR

        h.update(spec.encode())
        _file_sha(DATA_DIR / "manifest.toml", h)
        for f in sorted(p for p in DATA_DIR.rglob("*") if p.is_file() and p.suffix in (".npz", ".npy")):
            h.update(str(f.relative_to(DATA_DIR)).encode())
            _file_sha(f, h)
        return h.hexdigest()
    path = Path(spec)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        _file_sha(f, h)
    return h.hexdigest()


def _module_sha(model_class: str | None) -> str | None:
    """The model class's source file takes part in the key: changing the architecture reruns the cell."""
    if not model_class:
        return None
    try:
        spec = importlib.util.find_spec(model_class.split(":")[0])
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return content_sha256(origin) if origin and Path(origin).is_file() else None


def with_keys(plan: Plan) -> Plan:
    """Each cell's resume key: sha256 of checkpoint, data, profile file, options and versions."""
    from edgeport.profiles import load_profile
    from edgeport.report.summary import versions

    memo: dict[str, str | None] = {}

    def sha(spec: str | None) -> str | None:
        if spec not in memo:
            memo[spec] = content_sha256(spec)
        return memo[spec]

    vers = {**versions(), "python": sys.version.split()[0]}
    env = {k: v for k, v in plan.env.items() if k == "EDGEPORT_HOST_FIT"}
    cells = []
    for c in plan.cells:
        r = c.request
        parts = {"checkpoint": sha(r["checkpoint"]), "calib": sha(r.get("calib")), "val": sha(r.get("val")),
                 "profile": sha(str(load_profile(r["profile"]).path)), "model_class": _module_sha(r.get("model_class")),
                 "options": {k: v for k, v in r.items() if k not in ("checkpoint", "calib", "val")},
                 "versions": vers, "env": env}
        key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        cells.append(Cell(c.id, c.model, c.profile, c.mode, c.request, key))
    return replace(plan, cells=cells)
