"""`edgeport ship --check DIR`: every shipped model in an app folder still matches its manifest.

Meant for an app's CI: one line per problem (a stale or edited model, metadata stripped by a build
step, labels out of step with the model), all collected before the exit code (1 on any drift).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edgeport.errors import EdgeportError, InputError
from edgeport.ship import metadata as tm
from edgeport.ship.bundle import LABELS_IN_MODEL, MANIFEST, _read_manifest


def check(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise InputError(f"--check {folder} is not a folder", hint="pass the app folder that edgeport ship wrote into")
    manifest = _read_manifest(folder)
    if manifest is None:
        raise InputError(f"no {MANIFEST} in {folder}", hint="ship a model into it first: edgeport ship RESULT --to DIR")
    problems: list[str] = []
    for stem, entry in sorted(manifest["models"].items()):
        problems += [f"{stem}: {p}" for p in _check_entry(folder, entry)]
    listed = {(e.get("model") or {}).get("file") for e in manifest["models"].values()}
    for path in sorted(folder.glob("*.tflite")):
        if path.name not in listed:
            problems.append(f"{path.name}: not in {MANIFEST} (ship it with edgeport ship, or remove it)")
    return {"exit_code": 1 if problems else 0, "folder": str(folder), "models": sorted(manifest["models"]),
            "problems": problems}


def _check_entry(folder: Path, entry: dict[str, Any]) -> list[str]:
    model = entry.get("model") or {}
    path = folder / str(model.get("file"))
    if not path.is_file():
        return [f"{path.name} is missing"]
    data = path.read_bytes()
    problems = []
    if hashlib.sha256(data).hexdigest() != model.get("sha256"):
        problems.append(f"{path.name} sha256 differs from the manifest (the model was replaced or edited after shipping)")
    try:
        meta = tm.read(data)
        _, outputs = tm.io_shapes(data)
    except EdgeportError as e:
        return [*problems, f"{path.name}: {e.one_line()}"]
    except Exception as e:  # noqa: BLE001 - a damaged flatbuffer can fail anywhere in the parser
        return [*problems, f"{path.name} is not a readable TFLite model ({type(e).__name__})"]
    if meta is None:
        return [*problems, f"{path.name} has no TFLite metadata (TFLITE_METADATA)"]
    problems += _check_labels(folder, entry.get("labels"), meta, outputs, path.name)
    return problems


def _check_labels(folder: Path, labels: dict[str, Any] | None, meta: dict[str, Any],
                  outputs: list[tuple[str, tuple[int, ...]]], model_name: str) -> list[str]:
    if not labels:
        return []
    problems = []
    packed = meta["files"].get(labels.get("in_model") or LABELS_IN_MODEL)
    size = outputs[0][1][-1] if outputs and outputs[0][1] else 0
    if packed is None:
        problems.append(f"{model_name} carries no {LABELS_IN_MODEL} in its metadata")
    elif len(packed.decode(errors="replace").splitlines()) != size:
        problems.append(f"{model_name}: {LABELS_IN_MODEL} in the model has {len(packed.splitlines())} labels "
                        f"for an output of {size}")
    path = folder / str(labels.get("file"))
    if not path.is_file():
        return [*problems, f"{path.name} is missing"]
    text = path.read_bytes()
    count = len(text.decode(errors="replace").splitlines())
    if hashlib.sha256(text).hexdigest() != labels.get("sha256"):
        problems.append(f"{path.name} sha256 differs from the manifest (labels edited after shipping)")
    if count != labels.get("count") or count != size:
        problems.append(f"{path.name} has {count} labels; the manifest says {labels.get('count')} and the model "
                        f"outputs {size}")
    if packed is not None and packed != text:
        problems.append(f"{path.name} differs from the {LABELS_IN_MODEL} packed in {model_name}")
    return problems


def check_lines(result: dict[str, Any]) -> list[str]:
    if not result["problems"]:
        return [f"edgeport: {len(result['models'])} shipped model(s) in {result['folder']} match the manifest"]
    return list(result["problems"])
