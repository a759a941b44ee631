"""`edgeport doctor`: is this installation able to convert, and is it the set we verified?

Conversions depend on a narrow set of versions that work together (onnx2tf 1.28.8 needs TF 2.21 and
numpy 2.x; an unpinned torch drags in CUDA). Failures from a drifted set look like model bugs, so
this command says plainly what is installed, what edgeport needs, what constraints.txt verified, and
which optional device tools are present. Exit 1 only when something needed is missing or unusable.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# What a conversion imports (distribution -> module); used when edgeport's own metadata is absent.
CORE = {"torch": "torch", "tensorflow": "tensorflow", "tf-keras": "tf_keras", "onnx2tf": "onnx2tf", "onnx": "onnx",
        "onnxruntime": "onnxruntime", "onnxslim": "onnxslim", "onnx-graphsurgeon": "onnx_graphsurgeon",
        "sng4onnx": "sng4onnx", "ai-edge-litert": "ai_edge_litert", "numpy": "numpy", "pillow": "PIL",
        "psutil": "psutil", "rich": "rich"}
TOOLS = {  # name -> (version command, what it is for); all optional
    "ssh": (["ssh", "-V"], "ssh:// targets (Raspberry Pi, Linux boards)"),
    "scp": (None, "ssh:// targets (copies the runner over)"),
    "adb": (["adb", "version"], "adb:// targets (Android phones)"),
    "edgetpu_compiler": (["edgetpu_compiler", "--version"],
                         "exact Edge TPU op placement (without it, a static op table is used)"),
}


# Extras the README's set-up installs by default; each unlocks one feature and is reported, not required.
OPTIONAL = {  # distribution -> (module, what it is for)
    "litert-torch": ("litert_torch", "--exporter litert-torch (and auto's second path): PyTorch -> TFLite without ONNX"),
    "ai-edge-quantizer": ("ai_edge_quantizer", "quantized modes on the LiteRT Torch path (AI Edge Quantizer)"),
    "mediapipe": (None, "edgeport ship: TFLite metadata schema bindings"),
    "ray": (None, "edgeport sweep --ray"),
}


def _optional(import_check: bool) -> list[dict[str, Any]]:
    rows = []
    for dist, (module, purpose) in OPTIONAL.items():
        rows.append({"name": dist, "installed": _installed(dist), "for": purpose, "import_error": None, "module": module})
    modules = [r["module"] for r in rows if r["installed"] and r["module"]]
    if import_check and modules:
        errors = _import_check(modules)
        for r in rows:
            r["import_error"] = errors.get(r["module"] or "")
    for r in rows:
        r["usable"] = r["installed"] is not None and r["import_error"] is None
        del r["module"]
    return rows


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def requirements() -> dict[str, str]:
    """edgeport's own runtime requirements, {dist: specifier}, from its installed metadata."""
    try:
        reqs = metadata.requires("edgeport") or []
    except metadata.PackageNotFoundError:
        return {name: "" for name in CORE}
    found = {}
    for line in reqs:
        if "extra ==" in line:
            continue  # test/dev extras are not needed to convert
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(\[[^\]]*\])?\s*([^;]*)", line)
        if m:
            found[_norm(m.group(1))] = m.group(3).strip()
    found.setdefault("rich", "")  # progress bars; installed with TensorFlow's keras
    return found


def constraints_path() -> Path | None:
    candidate = Path(__file__).resolve().parent.parent / "constraints.txt"
    return candidate if candidate.is_file() else None


def read_constraints(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version.strip()
    return pins


def _release(version: str) -> str:
    """'2.13.0+cpu' is the verified 2.13.0: the local label only names the build (CPU wheel)."""
    return version.split("+", 1)[0]


def _satisfies(version: str, spec: str) -> bool:
    if not spec:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(version) in SpecifierSet(spec)
    except Exception:  # noqa: BLE001 - without packaging, only exact pins can be checked
        pins = re.findall(r"==\s*([^,\s]+)", spec)
        return all(version == p for p in pins)


def _import_check(modules: list[str], timeout_s: float = 180) -> dict[str, str | None]:
    """Import each module in a fresh interpreter: installed is not the same as importable (a CUDA
    build of a package, a missing shared library). Returns {module: error or None}."""
    code = ("import importlib, json, sys\nres = {}\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
            "        res[m] = None\n    except Exception as e:\n        res[m] = f'{type(e).__name__}: {e}'.splitlines()[0][:200]\n"
            "print('EDGEPORT-DOCTOR ' + json.dumps(res))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=timeout_s,
                              env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    except subprocess.TimeoutExpired:
        return {m: f"import did not finish within {timeout_s:.0f} s" for m in modules}
    for line in proc.stdout.splitlines():
        if line.startswith("EDGEPORT-DOCTOR "):
            return json.loads(line.split(" ", 1)[1])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    return {m: f"the import check crashed: {tail}" for m in modules}


def _tool(name: str) -> dict[str, Any]:
    cmd, purpose = TOOLS[name]
    path = shutil.which(name)
    entry: dict[str, Any] = {"name": name, "path": path, "version": None, "for": purpose, "required": False}
    if path and cmd:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
            entry["version"] = text[0][:120] if text else None
        except (OSError, subprocess.TimeoutExpired):
            entry["version"] = None
    return entry


def _profiles() -> dict[str, Any]:
    from edgeport.errors import EdgeportError
    from edgeport.profiles import list_profiles, profiles_dir

    directory = profiles_dir()
    entry: dict[str, Any] = {"path": str(directory), "names": [], "error": None}
    if not directory.is_dir():
        entry["error"] = "the profiles directory does not exist (set EDGEPORT_PROFILES_DIR or reinstall)"
        return entry
    try:
        entry["names"] = [p.name for p in list_profiles()]
    except EdgeportError as exc:
        entry["error"] = exc.one_line()
    if not entry["names"] and not entry["error"]:
        entry["error"] = "no profiles in the directory"
    return entry


def _board() -> dict[str, Any]:
    """The emulated arm64 board of the device tests (scripts/arm64_board.sh): built? running? where?"""
    from edgeport.runners.board import state

    return state().as_dict()


def diagnose(import_check: bool = True) -> dict[str, Any]:
    needs = requirements()
    cpath = constraints_path()
    verified = read_constraints(cpath) if cpath else {}
    packages = []
    for dist, spec in sorted(needs.items()):
        version = _installed(dist)
        packages.append({"name": dist, "installed": version, "required": spec or "any", "verified": verified.get(dist),
                         "ok": version is not None and _satisfies(version, spec), "import_error": None})
    if import_check:
        modules = {p["name"]: CORE.get(p["name"], p["name"].replace("-", "_")) for p in packages if p["installed"]}
        errors = _import_check(sorted(set(modules.values())))
        for p in packages:
            err = errors.get(modules.get(p["name"], ""))
            if err:
                p.update(import_error=err, ok=False)
    # constraints.txt caps versions, it installs nothing: a pin that is not installed is not drift
    # (the package is not needed here); an installed one at another version is.
    drift = [{"name": name, "installed": _installed(name), "verified": version}
             for name, version in sorted(verified.items())
             if _installed(name) is not None and _release(_installed(name)) != _release(version)]
    absent = sorted(name for name in verified if _installed(name) is None)
    python_ok = sys.version_info[:2] == (3, 11)
    profiles = _profiles()
    problems = [f"{p['name']}: " + (p["import_error"] or ("not installed" if p["installed"] is None else
                                                           f"{p['installed']} installed, needs {p['required']}"))
                for p in packages if not p["ok"]]
    if not python_ok:
        problems.append(f"Python {sys.version.split()[0]}: edgeport needs 3.11 (onnx2tf 1.28.8 with TensorFlow 2.21)")
    if profiles["error"]:
        problems.append(f"profiles: {profiles['error']}")
    return {
        "python": {"version": sys.version.split()[0], "executable": sys.executable, "ok": python_ok},
        "packages": packages,
        "verified_set": {"path": str(cpath) if cpath else None, "pins": len(verified),
                         "matches": bool(verified) and not drift, "differences": drift, "not_installed": absent},
        "tools": [_tool(name) for name in TOOLS],
        "optional": _optional(import_check),
        "profiles": profiles,
        "board": _board(),
        "problems": problems,
        "exit_code": 1 if problems else 0,
    }


def summary(data: dict[str, Any]) -> list[str]:
    py = data["python"]
    lines = ["edgeport doctor", f"  python     {py['version']}  {py['executable']}  {'ok' if py['ok'] else 'NEEDS 3.11'}",
             "  packages   (installed / what edgeport needs / the verified version in constraints.txt)"]
    for p in data["packages"]:
        state = "ok" if p["ok"] else ("MISSING" if p["installed"] is None else "PROBLEM")
        lines.append(f"    {p['name']:<18} {p['installed'] or '-':<12} needs {p['required']:<14} verified "
                     f"{p['verified'] or '-':<12} {state}" + (f"  ({p['import_error']})" if p["import_error"] else ""))
    vs = data["verified_set"]
    if vs["path"] is None:
        lines.append("  verified   constraints.txt not found next to the package (installed from a wheel?): not checked")
    elif vs["matches"]:
        lines.append(f"  verified   yes: every installed package pinned in {vs['path']} has the verified version"
                     + (f" ({len(vs['not_installed'])} pinned but not installed: {', '.join(vs['not_installed'])})"
                        if vs["not_installed"] else ""))
    else:
        diffs = ", ".join(f"{d['name']} {d['installed'] or 'missing'} (verified {d['verified']})" for d in vs["differences"][:8])
        more = f" and {len(vs['differences']) - 8} more" if len(vs["differences"]) > 8 else ""
        lines.append(f"  verified   no: {len(vs['differences'])} of {vs['pins']} pins differ: {diffs}{more}; "
                     "reinstall with scripts/setup_env.sh to get the verified set")
    lines.append("  extras     (optional features)")
    for o in data.get("optional", []):
        state = "ok" if o["usable"] else ("not installed" if o["installed"] is None else f"BROKEN ({o['import_error']})")
        lines.append(f"    {o['name']:<18} {o['installed'] or '-':<12} {state}  - for {o['for']}")
    lines.append("  tools      (optional)")
    for t in data["tools"]:
        where = f"{t['path']}  {t['version'] or ''}".strip() if t["path"] else "not found"
        lines.append(f"    {t['name']:<18} {where}  - for {t['for']}")
    prof = data["profiles"]
    lines.append(f"  profiles   {prof['path']}: " + (prof["error"] or f"{len(prof['names'])} ({', '.join(prof['names'])})"))
    board = data.get("board") or {}
    if board:
        lines.append(f"  board      arm64 emulated Pi 4 (optional, for device tests): {board['reason']}")
    if data["problems"]:
        lines.append(f"  result     MISSING OR BROKEN: {'; '.join(data['problems'])}")
    else:
        lines.append("  result     ok: everything a conversion needs is installed")
    return lines
