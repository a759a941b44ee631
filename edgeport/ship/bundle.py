"""`edgeport ship`: put a converted model into an app's asset folder with standard TFLite metadata,
its labels and a manifest; `edgeport ship --check DIR` proves the folder still matches the manifest.

The manifest (`edgeport-manifest.json`, one entry per shipped model) is written last, so it only ever
names files that are complete. Every file is written through a temp file and a rename, and only
when its bytes change, so shipping the same result twice rewrites nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError, EdgeportError, InputError
from edgeport.ship import metadata as tm
from edgeport.types import file_sha256

MANIFEST = "edgeport-manifest.json"
FORMAT = "edgeport-ship/1"
LABELS_IN_MODEL = "labels.txt"  # the associated file's name inside the model, as Task Library examples use
_TMP_PREFIX = ".edgeport-"


class ShipRefused(EdgeportError):
    """The model was built but failed its verdict: not shipped unless --force (exit 1, like convert)."""

    exit_code = 1


@dataclass(frozen=True)
class ShipRequest:
    result: Path
    to: Path
    labels: Path | None = None
    mean: tuple[float, ...] | None = None  # pixel units (0..255), as apps apply them
    std: tuple[float, ...] | None = None
    name: str | None = None  # asset file stem in DIR; default: the artifact's stem
    model_name: str | None = None
    version: str | None = None
    description: str | None = None
    force: bool = False
    replace: bool = False


def ship(req: ShipRequest) -> dict[str, Any]:
    report, report_path, source = _resolve(req.result)
    verdict = report.get("verdict") or {}
    failed = [c.get("name", "?") for c in verdict.get("checks", []) if not c.get("passed")]
    if not verdict.get("passed") and not req.force:
        raise ShipRefused(f"refusing to ship {source.name}: its verdict FAILED ({', '.join(failed) or 'no passing verdict'})",
                          hint="fix the model and convert again, or pass --force (the override is recorded in the manifest)")
    src = source.read_bytes()
    inputs, outputs = tm.io_shapes(src)
    labels = _labels(req, report, outputs)
    meta = _model_meta(req, report, src, inputs, outputs, labels)
    files = {LABELS_IN_MODEL: _labels_text(labels)} if labels else {}
    shipped = tm.attach(src, meta, files)
    _prove_unchanged(src, shipped, labels)

    stem = req.name or source.stem
    if not stem or "/" in stem or stem.startswith("."):
        raise InputError(f"--name {stem!r} is not a plain file name", hint="e.g. --name digits_v2")
    out_dir = _prepare_dir(req.to)
    manifest = _read_manifest(out_dir) or {"format": FORMAT, "models": {}}
    model_file, labels_file = f"{stem}.tflite", f"{stem}.labels.txt" if labels else None
    _no_clobber(out_dir, model_file, shipped, manifest, stem, source, req.replace)
    entry = _entry(report, report_path, source, src, shipped, meta, model_file, labels_file, labels, failed, req.force)
    manifest["models"][stem] = entry
    written, unchanged = [], []
    todo = [(model_file, shipped)] + ([(labels_file, files[LABELS_IN_MODEL])] if labels_file else [])
    todo.append((MANIFEST, _manifest_bytes(manifest)))  # last: it only names complete files
    for name, data in todo:
        try:
            (written if write_if_changed(out_dir / name, data) else unchanged).append(name)
        except OSError as e:
            raise InputError(f"cannot write {out_dir / name}: {e.strerror or e}",
                             hint="check the folder's permissions and free space, then ship again") from None
    return {"exit_code": 0, "notes": _notes(meta), "model": str(out_dir / model_file), "labels": str(out_dir / labels_file) if labels_file else None,
            "manifest": str(out_dir / MANIFEST), "written": written, "unchanged": unchanged,
            "metadata_bytes_added": len(shipped) - len(src), "forced": bool(req.force and not verdict.get("passed")),
            "metadata": {k: v for k, v in (tm.read(shipped) or {}).items() if k != "files"}}


def ship_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"edgeport: shipped {result['model']} (+{result['metadata_bytes_added']} bytes of TFLite metadata)"]
    for item in result["metadata"]["inputs"]:
        norm = f"mean {item['mean']} std {item['std']}" if item["mean"] is not None else "no normalization"
        lines.append(f"  input   {item['name']}: {item['color_space'] or 'feature'}, {norm}")
    for item in result["metadata"]["outputs"]:
        lines.append(f"  output  {item['name']}" + (f": labels {item['labels_file']}" if item["labels_file"] else ""))
    lines += [f"  note    {note}" for note in result["notes"]]
    if result["forced"]:
        lines.append("  FORCED  the verdict failed; the override is recorded in the manifest")
    lines.append(f"  written {', '.join(result['written']) or 'nothing (already up to date)'}")
    return lines


def _notes(meta: tm.ModelMeta) -> list[str]:
    notes = []
    for i in meta.inputs:
        if i.mean is not None and (len(set(i.mean)) > 1 or len(set(i.std or ())) > 1):
            # Measured with mediapipe 1.2.2: create_from_options raises "Per-channel image normalization
            # is not available"; the Android Task Library and the metadata extractor do read per-channel values.
            notes.append(f"input {i.name!r} has per-channel mean/std: MediaPipe Tasks refuses such a model (one value "
                         "for all channels only); the Android Task Library reads it. Convert with one mean/std value "
                         "(e.g. --preprocess mean=0.5 --preprocess std=0.5) to run it in MediaPipe")
    return notes


def _resolve(result: Path) -> tuple[dict[str, Any], Path, Path]:
    """(report, report path, model path) for a convert output dir, a report.json or a .tflite."""
    if result.is_dir():
        candidates = [result / "report.json"] if (result / "report.json").is_file() else sorted(result.glob("*.report.json"))
        if len(candidates) != 1:
            raise InputError(f"{result} holds {'no' if not candidates else 'several'} edgeport report(s)",
                             hint="pass the convert output folder, its report.json, or the .tflite itself")
        report_path = candidates[0]
    elif result.suffix == ".tflite" and result.is_file():
        report_path = result.with_name(f"{result.stem}.report.json")
        if not report_path.is_file():
            report_path = result.with_name("report.json")
    elif result.is_file():
        report_path = result
    else:
        raise InputError(f"{result} not found", hint="pass the convert output folder, its report.json, or the .tflite")
    try:
        report = json.loads(report_path.read_text())
        art = report["artifact"]
        want_sha, art_name = art["sha256"], Path(art["path"]).name
    except FileNotFoundError:
        raise InputError(f"no edgeport report beside {result}", hint="ship the convert output folder, which holds report.json") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{report_path} is not an edgeport report ({type(e).__name__}: {e})",
                         hint="pass the report.json that edgeport convert wrote") from None
    model = result if result.suffix == ".tflite" else report_path.with_name(art_name)
    if not model.is_file():
        raise InputError(f"the report names {art_name}, which is not beside it in {report_path.parent}",
                         hint="keep the .tflite next to its report.json")
    if file_sha256(model) != want_sha:
        raise InputError(f"{model} does not match its report (sha256 differs)",
                         hint="convert again, or pass the report that was written with this model")
    return report, report_path, model


def _labels(req: ShipRequest, report: dict[str, Any], outputs: list[tuple[str, tuple[int, ...]]]) -> list[str] | None:
    if req.labels is not None:
        try:
            lines = req.labels.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read --labels {req.labels}: {e}", hint="pass a UTF-8 text file, one label per line") from None
        while lines and not lines[-1].strip():
            lines.pop()
        labels, where = [line.strip() for line in lines], f"--labels {req.labels}"
        if blank := [i + 1 for i, label in enumerate(labels) if not label]:
            raise InputError(f"{where} has an empty label on line {blank[0]}", hint="one non-empty label per line")
    else:
        data = report.get("data") or {}
        names = next((d.get("class_names") for d in (data.get("validation"), data.get("calibration"))
                      if isinstance(d, dict) and d.get("class_names")), None)
        if not names:
            return None
        labels, where = [str(n) for n in names], "the class names recorded at conversion"
    size = outputs[0][1][-1] if outputs and outputs[0][1] else 0
    if len(labels) != size:
        raise InputError(f"{where} gives {len(labels)} label(s) but the model's first output has {size} value(s)",
                         hint=f"pass --labels FILE with exactly {size} lines, in output index order")
    return labels


def _labels_text(labels: list[str]) -> bytes:
    return ("\n".join(labels) + "\n").encode()


def _model_meta(req: ShipRequest, report: dict[str, Any], src: bytes, inputs: list, outputs: list,
                labels: list[str] | None) -> tm.ModelMeta:
    model = report.get("model") or {}
    pre = _preprocessing(report)
    names_in = [i.get("name") for i in model.get("inputs", [])]
    names_out = [o.get("name") for o in model.get("outputs", [])]
    # Report names are the source model's (e.g. "x", "logits"); the TFLite ones are the converter's.
    names_in = names_in if len(names_in) == len(inputs) else [n for n, _ in inputs]
    names_out = names_out if len(names_out) == len(outputs) else [n for n, _ in outputs]
    metas_in = [_input_meta(name, shape, pre if len(inputs) == 1 else None, req) for name, (_, shape) in zip(names_in, inputs, strict=True)]
    metas_out = [tm.OutputMeta(name, "class scores, one per label" if labels and k == 0 else "model output",
                               LABELS_IN_MODEL if labels and k == 0 else None) for k, name in enumerate(names_out)]
    quant = (report.get("quantization") or {}).get("mode")
    profile = (report.get("profile") or {}).get("name")
    acc = (report.get("accuracy") or {}).get("tflite")
    val = (report.get("data") or {}).get("validation") or {}
    default_desc = (f"{quant} TFLite for {profile}, converted and validated by edgeport "
                    f"{(report.get('versions') or {}).get('edgeport')}"
                    + (f"; top-1 accuracy {acc:.2%} on {val.get('samples')} held-out samples ({val.get('source')})"
                       if acc is not None else ""))
    return tm.ModelMeta(
        name=req.model_name or Path(str(model.get("source") or "model")).stem,
        version=req.version or f"sha256:{hashlib.sha256(src).hexdigest()[:12]}",
        description=req.description or default_desc, author=None,
        inputs=tuple(metas_in), outputs=tuple(metas_out))


def _preprocessing(report: dict[str, Any]) -> dict[str, Any] | None:
    data = report.get("data") or {}
    for role in ("validation", "calibration"):
        pre = (data.get(role) or {}).get("preprocessing")
        if isinstance(pre, dict) and pre.get("mean") is not None:
            return pre
    return None


def _input_meta(name: str, shape: tuple[int, ...], pre: dict[str, Any] | None, req: ShipRequest) -> tm.InputMeta:
    """Image properties and normalization for one TFLite input (NHWC, as onnx2tf writes it)."""
    image = len(shape) == 4 and shape[3] in (1, 3)
    color = size = mean = std = None
    if req.mean is not None or req.std is not None:
        if req.mean is None or req.std is None:
            raise InputError("--mean and --std go together", hint="e.g. --mean 127.5 --std 127.5")
        mean, std = req.mean, req.std
        color = ("GRAYSCALE" if shape[3] == 1 else "RGB") if image else None
    elif pre is not None and image:
        if pre.get("color") == "bgr":
            raise InputError("the model was validated on BGR images; TFLite metadata can only say RGB or grayscale",
                             hint="convert again with --preprocess color=rgb, or pass --mean/--std and feed BGR in your app")
        # edgeport normalizes (pixel * scale - mean) / std; metadata normalizes (pixel - mean) / std.
        scale = float(pre.get("scale") or 1.0)
        mean = tuple(float(m) / scale for m in pre["mean"])
        std = tuple(float(s) / scale for s in pre["std"])
        color = "GRAYSCALE" if pre.get("color") == "grayscale" else "RGB"
    if mean is not None:
        channels = shape[-1] if shape else 1
        for key, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels):
                raise InputError(f"{key} has {len(values)} values but input {name!r} has {channels} channel(s)",
                                 hint=f"pass one {key} value, or one per channel")
        if any(s == 0 for s in std):  # type: ignore[union-attr]
            raise InputError("--std must not be 0", hint="e.g. --std 127.5")
    if color is not None:
        size = (shape[2], shape[1]) if shape[1] > 0 and shape[2] > 0 else None
    desc = f"{'image' if color else 'input'} {'x'.join(map(str, shape))}" + (
        " (NHWC); apps feed (pixel - mean) / std" if mean is not None else "")
    return tm.InputMeta(name, desc, color, size, mean, std)


def _prove_unchanged(src: bytes, shipped: bytes, labels: list[str] | None) -> None:
    # The graph, tensors and weights must be exactly the validated ones; only metadata is added.
    if tm.without_metadata(src) != tm.without_metadata(shipped):
        raise ConversionError("adding metadata changed the model's graph or weights", hint="report this with --debug output")
    back = tm.read(shipped) or {}
    if labels and back.get("files", {}).get(LABELS_IN_MODEL) != _labels_text(labels):
        raise ConversionError("the labels packed into the model do not read back", hint="report this with --debug output")


def _prepare_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise InputError(f"--to {path} is a file, not a folder", hint="pass the app's asset folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create --to {path}: {e.strerror}", hint="check the path and its permissions") from None
    for tmp in path.glob(f"{_TMP_PREFIX}*.tmp"):  # left by a killed run: never a complete file
        if not _pid_alive(tmp.name.rsplit(".", 2)[-2]):
            tmp.unlink(missing_ok=True)
    return path


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
            raise ValueError(f"format is {data.get('format')!r}, not {FORMAT!r}")
        return data
    except (OSError, ValueError, AttributeError) as e:
        raise InputError(f"{path} is not an edgeport manifest ({e})", hint="fix or delete it, then ship again") from None


def _no_clobber(out_dir: Path, model_file: str, shipped: bytes, manifest: dict[str, Any], stem: str, source: Path,
                replace: bool) -> None:
    target = out_dir / model_file
    if replace or not target.exists() or target.read_bytes() == shipped:
        return
    entry = manifest["models"].get(stem) or {}
    was = (entry.get("source") or {}).get("artifact", {}).get("sha256")
    if was == file_sha256(source):
        return  # the same converted model, re-shipped with other metadata (e.g. --version): an update
    raise InputError(f"{target} already holds a different model"
                     + (f" (shipped from {entry['source'].get('report')})" if was else " (not shipped by edgeport)"),
                     hint=f"ship under another name with --name {stem}_2, or pass --replace to overwrite it")


def _entry(report: dict[str, Any], report_path: Path, source: Path, src: bytes, shipped: bytes, meta: tm.ModelMeta,
           model_file: str, labels_file: str | None, labels: list[str] | None, failed: list[str], force: bool
           ) -> dict[str, Any]:
    data = report.get("data") or {}
    lat = report.get("latency") or {}
    acc = report.get("accuracy") or {}
    model = report.get("model") or {}
    verdict = report.get("verdict") or {}

    def dataset(role: str) -> dict[str, Any] | None:
        d = data.get(role)
        return None if not isinstance(d, dict) else {"source": d.get("source"), "samples": d.get("samples"), "sha256": d.get("sha256")}

    return {
        "model": {"file": model_file, "sha256": hashlib.sha256(shipped).hexdigest(), "size_bytes": len(shipped),
                  "metadata_bytes_added": len(shipped) - len(src)},
        "labels": None if not labels else {"file": labels_file, "count": len(labels),
                                           "sha256": hashlib.sha256(_labels_text(labels)).hexdigest(),
                                           "in_model": LABELS_IN_MODEL},
        "metadata": {"name": meta.name, "version": meta.version, "description": meta.description,
                     "inputs": [{"name": i.name, "color_space": i.color_space, "mean": i.mean, "std": i.std} for i in meta.inputs],
                     "outputs": [o.name for o in meta.outputs]},
        "profile": (report.get("profile") or {}).get("name"),
        "quant_mode": (report.get("quantization") or {}).get("mode"),
        "accuracy": {k: acc.get(k) for k in ("reference", "tflite", "drop_pp", "top1_agreement", "cosine_mean", "snr_db")},
        "latency": {"simulated": {"p50_ms": (lat.get("simulated") or {}).get("p50_ms")},
                    "host": {k: (lat.get("host") or {}).get(k) for k in ("p50_ms", "p90_ms")},
                    "device": {k: (lat.get("device") or {}).get(k) for k in ("p50_ms", "p90_ms", "target")}},
        "verdict": {"passed": bool(verdict.get("passed")), "failed_checks": failed,
                    "forced": bool(force and not verdict.get("passed"))},
        "versions": {"convert": report.get("versions"), "ship": _ship_versions()},
        "source": {"report": report_path.name, "report_sha256": file_sha256(report_path),
                   "artifact": {"file": source.name, "sha256": hashlib.sha256(src).hexdigest(), "size_bytes": len(src)},
                   "checkpoint": {"path": model.get("source"), "sha256": model.get("sha256")},
                   "calibration": dataset("calibration"), "validation": dataset("validation")},
    }


def _ship_versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in ("edgeport", "mediapipe"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace `path` with `data` unless it already holds exactly that; True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the rename must never expose a file whose bytes are not on disk yet
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True

