"""Calibration / validation data: turn a data spec into model-ready arrays and check them.

A spec is a `.npz`, a `.npy`, a folder of images, or `builtin:NAME` (calibration_data/manifest.toml).
Bad data is the commonest reason an int8 model is silently wrong, so every structural problem is a
CalibrationError that says what to change; soft problems (odd value ranges, few samples) come back
from `check_data` as warnings for the report.

`max_samples` keeps the first N samples in source order (no randomness, so runs reproduce): arrays in
file order; image folders with classes interleaved round-robin (files sorted by path), so the first N
of a labelled folder cover every class instead of only the first one.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.data.imagefolder import IMAGE_EXTS, normalize, read_folder
from edgeport.data.preprocessing import Preprocessing, value_range
from edgeport.errors import CalibrationError, cause_line
from edgeport.tasks.labels import KEYS as TASK_LABEL_KEYS
from edgeport.tasks.labels import TaskLabels, from_arrays
from edgeport.types import TensorSpec
from edgeport.validate.labels import check_labels

DATA_DIR = Path(__file__).resolve().parents[2] / "calibration_data"
LABEL_KEY = "y"
RECOMMENDED_CALIBRATION = 100  # TFLite's PTQ guide suggests ~100-500 representative samples
_SAVE_HINT = "save numeric arrays with np.savez(path, x=..., y=...) (float32, or uint8 pixels; no pickled objects)"
_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "c": "complex numbers", "M": "dates",
               "m": "time deltas", "V": "raw records"}


@dataclass(frozen=True, eq=False)  # eq=False: comparing dicts of arrays has no single truth value
class Dataset:
    """Arrays ready to feed the model, keyed by input name in model input order."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    sha256: str
    preprocessing: dict[str, Any] | None
    class_names: tuple[str, ...] | None = None
    # What a ctc/detect/segment task scores against (.npz keys text+charset, tokens, boxes, masks).
    task_labels: TaskLabels | None = None

    @property
    def scored_labels(self) -> TaskLabels | np.ndarray | None:
        """What a task scores against (edgeport.tasks.score): the task labels when the data has them, else class ids."""
        return self.task_labels if self.task_labels is not None else self.labels

    @property
    def count(self) -> int:
        first = next(iter(self.inputs.values()), None)
        return int(first.shape[0]) if first is not None and first.ndim else 0

    def take(self, idx: np.ndarray) -> Dataset:
        """Subset by indices or boolean mask; the hash is recomputed so subsets are distinguishable."""
        sel = np.asarray(idx)
        sel = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
        labels = None if self.labels is None else self.labels[sel]
        return _make({k: v[sel] for k, v in self.inputs.items()}, labels, self.source, self.preprocessing,
                     self.class_names, None if self.task_labels is None else self.task_labels.take(sel))


def _make(inputs: dict[str, np.ndarray], labels: np.ndarray | None, source: str,
          preprocessing: dict[str, Any] | None, class_names: tuple[str, ...] | None,
          task_labels: TaskLabels | None = None) -> Dataset:
    # Name, dtype and shape are hashed too, so equal bytes with a different meaning differ.
    h = hashlib.sha256()
    extra = [("\0" + k, v) for k, v in (task_labels.arrays() if task_labels else {}).items()]
    if task_labels and task_labels.charset:
        extra.append(("\0charset", np.array(task_labels.charset)))
    for name, arr in [*inputs.items(), *([("\0labels", labels)] if labels is not None else []), *extra]:
        a = np.ascontiguousarray(arr)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return Dataset(inputs, labels, source, h.hexdigest(), preprocessing, class_names, task_labels)


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) if d > 0 else "?" for d in shape) or "scalar"


def _matches(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(got) == len(want) and all(w <= 0 or g == w for g, w in zip(got, want, strict=True))


def _savez_hint(names: list[str]) -> str:
    return f"save an .npz with one array per input name: np.savez(path, {'=..., '.join(names)}=...)"


def builtin_names() -> list[str]:
    path = DATA_DIR / "manifest.toml"
    return sorted(k for k, v in _manifest(path).items() if isinstance(v, dict)) if path.is_file() else []


def sample_shape(spec: str) -> tuple[int, ...] | None:
    """Per-sample shape of array data (None for image folders or unreadable specs), so a torch model
    fed by an .npz or a built-in set needs no --input-shape."""
    try:
        if spec.startswith("builtin:"):
            manifest = DATA_DIR / "manifest.toml"
            entry = _manifest(manifest).get(spec.split(":", 1)[1]) if manifest.is_file() else None
            if not isinstance(entry, dict):
                return None
            with np.load(DATA_DIR / entry["file"], allow_pickle=False) as data:
                return tuple(int(d) for d in data[entry["x"]].shape[1:])
        if spec.endswith(".npy"):
            return tuple(int(d) for d in np.load(spec, mmap_mode="r", allow_pickle=False).shape[1:])
        if spec.endswith(".npz"):
            with np.load(spec, allow_pickle=False) as data:
                keys = [k for k in data.files if k != LABEL_KEY]
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                return tuple(int(d) for d in data[key].shape[1:]) if key else None
    except (OSError, ValueError, KeyError, TypeError, CalibrationError):
        return None
    return None


def integer_arrays(spec: str) -> dict[str, str]:
    """Array name -> dtype for the integer arrays of an .npz/.npy (token ids, indices), so a torch
    model is exported with integer inputs where the data says so."""
    try:
        if spec.endswith(".npy"):
            arr = np.load(spec, mmap_mode="r", allow_pickle=False)
            return {"x": str(arr.dtype)} if arr.dtype.kind in "iu" else {}
        if spec.endswith(".npz"):
            with np.load(spec, allow_pickle=False) as data:
                return {k: str(data[k].dtype) for k in data.files if k != LABEL_KEY and data[k].dtype.kind in "iu"}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {}


def _manifest(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CalibrationError(f"cannot read the built-in data manifest {path}: {e}",
                               hint="reinstall edgeport or pass your own .npz") from None


def load_data(spec: str, inputs: list[TensorSpec], preprocessing: Preprocessing | None = None, *,
              max_samples: int | None = None, outputs: Sequence[TensorSpec] | None = None) -> Dataset:
    """Read `spec` into arrays matching `inputs` (shapes in the model's layout, batch axis = samples).

    For .npz/.npy only `preprocessing.layout` is used (to explain shape mismatches): arrays are fed
    as saved. For builtin data the manifest's normalization applies, in that layout. With the
    model's `outputs`, labels are also checked against the output they score.
    """
    what, names = f"data {spec!r}", [s.name for s in inputs]
    if not inputs:
        raise CalibrationError(f"the model has no inputs to feed {what} to", hint="check the exported model")
    if max_samples is not None and max_samples < 1:
        raise CalibrationError(f"max_samples={max_samples} keeps no data", hint="pass a positive sample count")
    if len(inputs) > 1 and (spec.startswith("builtin:") or _path_kind(spec) == "dir"):
        raise CalibrationError(f"{what} can only feed a single-input model; this one has {', '.join(names)}",
                               hint=_savez_hint(names))
    pre = preprocessing or Preprocessing()
    applied: dict[str, Any] | None = None
    class_names: tuple[str, ...] | None = None
    task_arrays: dict[str, np.ndarray] = {}
    if spec.startswith("builtin:"):
        x, labels, applied, class_names = _read_builtin(spec, pre)
        raw = {names[0]: x}
    elif _path_kind(spec) == "dir":
        raw, labels, applied, class_names = read_folder(what, Path(spec), inputs[0], pre, max_samples)
    elif _path_kind(spec) == "file":
        raw, labels, task_arrays = _read_arrays(what, Path(spec), names)
    else:
        raise CalibrationError(f"{what} not found", hint="pass an existing .npz, .npy, image folder or builtin:NAME "
                                                         f"(built-in: {', '.join(builtin_names()) or 'none'})")
    count = _check_inputs(raw, inputs, pre.layout, what)
    labels = None if labels is None else check_labels(labels, count, what, outputs)
    task_labels = from_arrays(task_arrays, count, what, tuple(names))
    stop = count if max_samples is None else min(count, max_samples)
    arrays = {s.name: _cast(raw[s.name][:stop], s, what) for s in inputs}
    return _make(arrays, None if labels is None else labels[:stop], spec, applied, class_names,
                 None if task_labels is None else task_labels.take(np.arange(stop)))


def _path_kind(spec: str) -> str | None:
    try:
        path = Path(spec)
        return None if not spec else "dir" if path.is_dir() else "file" if path.is_file() else None
    except (OSError, ValueError):  # over-long names, NUL bytes: just "not found"
        return None


def _read_numpy(path: Path, what: str) -> dict[str, np.ndarray] | np.ndarray:
    try:
        obj = np.load(path, allow_pickle=False)  # never unpickle user files
        if isinstance(obj, np.ndarray):
            return obj
        with obj:
            return {k: obj[k] for k in obj.files}
    except Exception as e:  # corrupt zips raise BadZipFile, zlib.error, EOFError, ValueError...
        raise CalibrationError(f"cannot read {what}: {type(e).__name__}: {cause_line(e)}", hint=_SAVE_HINT) from None


def _read_arrays(what: str, path: Path, names: list[str]) -> tuple[dict[str, np.ndarray], Any, dict[str, np.ndarray]]:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTS:
        raise CalibrationError(f"{what} is a single image", hint="pass the folder that holds the images")
    if suffix not in (".npz", ".npy"):
        raise CalibrationError(f"{what} has an unsupported type {suffix or '(no suffix)'!r}",
                               hint="pass a .npz, .npy, a folder of images or builtin:NAME")
    content = _read_numpy(path, what)
    if isinstance(content, np.ndarray):
        if len(names) > 1:
            raise CalibrationError(f"{what} is a single .npy array but the model has inputs {', '.join(names)}",
                                   hint=_savez_hint(names))
        return {names[0]: content}, None, {}
    label_key = LABEL_KEY if LABEL_KEY not in names else None  # an input named "y" is data, not labels
    task_keys = {k for k in TASK_LABEL_KEYS if k in content and k not in names}  # likewise "text", "boxes"...
    data = {k: v for k, v in content.items() if k != label_key and k not in task_keys}
    have = f"the file has {', '.join(content) or 'nothing'}"
    if len(names) == 1:
        key = next((k for k in (names[0], "x") if k in data), next(iter(data)) if len(data) == 1 else None)
        if key is None:
            raise CalibrationError(f"{what}: no array for input {names[0]!r}; {have}",
                                   hint=f"name the input array 'x' or {names[0]!r} (labels: 'y')")
        data = {names[0]: data[key]}
    elif missing := [n for n in names if n not in data]:
        raise CalibrationError(f"{what}: missing arrays for inputs {', '.join(missing)}; {have}",
                               hint=_savez_hint(names))
    return data, content.get(label_key) if label_key else None, {k: content[k] for k in task_keys}


def _check_array(name: str, arr: np.ndarray, spec: TensorSpec, layout: str, what: str) -> None:
    """Fatal shape/dtype problems for one input; the message says how to fix the data."""
    if arr.dtype.kind not in "biuf":
        kind = _KIND_NAMES.get(arr.dtype.kind, "non-numbers")
        raise CalibrationError(f"{what}: input {name!r} holds {kind} (dtype {arr.dtype})", hint=_SAVE_HINT)
    want, got = tuple(spec.shape[1:]), tuple(arr.shape[1:])
    if arr.ndim and _matches(got, want):
        return
    msg = f"{what}: input {name!r} has per-sample shape {_fmt(got)} but the model expects {_fmt(want)}"
    hint = (f"save arrays of shape (N, {_fmt(want)}) in the model's {layout} layout, "
            "or export the model with --input-shape matching the data")
    if arr.ndim == 0 or _matches(tuple(arr.shape), want):
        msg = f"{what}: input {name!r} is one sample of shape {_fmt(arr.shape)}, without a batch axis"
        hint = f"stack samples along a leading axis: (N, {_fmt(want)}), e.g. x[None]"
    elif len(want) == len(got) == 3:
        nchw, c = layout == "NCHW", 0 if layout == "NCHW" else 2
        if _matches((got[2], got[0], got[1]) if nchw else (got[1], got[2], got[0]), want):
            msg += ": looks like NHWC" if nchw else ": looks like NCHW, the model input is NHWC"
            hint = f"pass {layout} (N, {_fmt(want)}) or transpose: x.transpose{(0, 3, 1, 2) if nchw else (0, 2, 3, 1)}"
        elif got[:c] + got[c + 1:] == want[:c] + want[c + 1:]:
            msg += f": {got[c]} channel(s) instead of {want[c]}"
            hint = ("save images with the model's channel count (RGB=3, grayscale=1; "
                    "np.repeat(x, 3, axis=1) turns 1 channel into 3 for NCHW)")
    raise CalibrationError(msg, hint=hint)


def _check_inputs(raw: dict[str, np.ndarray], inputs: list[TensorSpec], layout: str, what: str) -> int:
    if missing := [s.name for s in inputs if s.name not in raw]:
        raise CalibrationError(f"{what}: no arrays for model inputs {', '.join(missing)}",
                               hint="provide one array per model input")
    for s in inputs:
        _check_array(s.name, raw[s.name], s, layout, what)
    counts = {s.name: int(raw[s.name].shape[0]) for s in inputs}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"{what}: inputs have different sample counts "
                               f"({', '.join(f'{k}={v}' for k, v in counts.items())})",
                               hint="save the same number of samples for every input")
    return counts[inputs[0].name] if inputs else 0  # check_data may be handed an empty input list


def _cast(arr: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    """Convert to the model input's dtype; ints become float for float inputs (range judged later)."""
    try:
        target = np.dtype(spec.dtype)
    except (TypeError, ValueError):
        target = np.dtype(object)  # reported as unsupported below
    if target.kind == "f":
        with np.errstate(over="ignore"):  # overflow to Inf is reported by check_data with its sample index
            return arr.astype(target, copy=False)
    if target.kind not in "iub":
        raise CalibrationError(f"model input {spec.name!r} has unsupported dtype {spec.dtype!r}",
                               hint="export the model with float or integer inputs")
    lo, hi = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
    whole = arr.dtype.kind != "f" or bool(np.isfinite(arr).all() and np.array_equal(arr, np.round(arr)))
    if arr.size and not (whole and lo <= float(arr.min()) and float(arr.max()) <= hi):
        raise CalibrationError(f"{what}: input {spec.name!r} is {target}, but the data has fractions, NaN/Inf "
                               f"or values outside {lo}..{hi}", hint=f"save whole numbers within {lo}..{hi}")
    return arr.astype(target, copy=False)


def _read_builtin(spec: str, pre: Preprocessing) -> tuple[np.ndarray, Any, dict[str, Any], tuple[str, ...] | None]:
    """A manifest entry: stored uint8 pixels normalized as the manifest says, in the model's layout,
    with the class names the manifest lists (label i is classes[i])."""
    name, what = spec.removeprefix("builtin:"), f"built-in data {spec!r}"
    manifest = DATA_DIR / "manifest.toml"
    entry = (_manifest(manifest) if manifest.is_file() else {}).get(name)
    if not isinstance(entry, dict):
        available = ", ".join(f"builtin:{n}" for n in builtin_names()) or "none installed"
        raise CalibrationError(f"unknown built-in data set {name!r}", hint=f"available: {available}")
    try:
        content = _read_numpy(DATA_DIR / entry["file"], what)
        if not isinstance(content, dict):
            raise TypeError(f"{entry['file']} is not an .npz")
        raw, labels = content[entry["x"]], content.get(entry["y"]) if "y" in entry else None
        src = Preprocessing(scale=float(entry["scale"]), mean=tuple(map(float, entry["mean"])),
                            std=tuple(map(float, entry["std"])), layout=entry.get("layout", "NCHW"))
        axis = 1 if src.layout == "NCHW" else 3
        src = replace(src, color="grayscale" if raw.shape[axis] == 1 else "rgb", crop=(
            raw.shape[2:4] if axis == 1 else raw.shape[1:3]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CalibrationError(f"{what} has a broken manifest entry or file ({e!r})",
                               hint="reinstall edgeport or pass your own .npz") from None
    x = normalize(raw, src, axis, what)
    if pre.layout != src.layout:  # the model's layout wins; the manifest says how the file is stored
        x = np.ascontiguousarray(x.transpose((0, 2, 3, 1) if pre.layout == "NHWC" else (0, 3, 1, 2)))
    classes = tuple(str(c) for c in entry["classes"]) if "classes" in entry else None
    return x, labels, replace(src, layout=pre.layout).to_dict(), classes


def check_data(ds: Dataset, inputs: list[TensorSpec], *, role: str = "calibration", min_samples: int = 8,
               expected_range: tuple[float, float] | None = None) -> list[str]:
    """Raise CalibrationError for data that cannot be used; return warnings for data that looks off.

    `expected_range` defaults to what the recorded preprocessing maps 0..255 pixels to (if any).
    """
    what = f"{role} data {ds.source!r}"
    n = _check_inputs(ds.inputs, inputs, str((ds.preprocessing or {}).get("layout", "NCHW")), what)
    if n < min_samples:
        raise CalibrationError(f"{what} has {n} sample(s); at least {min_samples} are needed",
                               hint=f"add at least {min_samples - n} more samples (a few hundred give the best ranges)")
    for s in inputs:
        _check_finite(s.name, ds.inputs[s.name], what)
    if ds.labels is not None:
        check_labels(ds.labels, n, what)
    if expected_range is None and ds.preprocessing and "scale" in ds.preprocessing:
        p = ds.preprocessing
        expected_range = value_range(float(p["scale"]), tuple(p["mean"]), tuple(p["std"]))
    warnings = [w for s in inputs for w in _range_warnings(s.name, ds.inputs[s.name], expected_range, what)]
    if role == "calibration" and n < RECOMMENDED_CALIBRATION:
        warnings.append(f"{what} has only {n} samples; int8 ranges are more reliable with "
                        f"{RECOMMENDED_CALIBRATION}+ representative samples")
    if role == "validation" and ds.labels is None and ds.task_labels is None:
        warnings.append(f"{what} has no labels: accuracy is judged only by agreement with the reference model")
    return warnings


def _check_finite(name: str, arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    if bad.any():
        raise CalibrationError(f"{what}: input {name!r} has {int((~np.isfinite(arr)).sum())} NaN/Inf value(s), "
                               f"first in sample {int(np.argmax(bad))}", hint="fix or drop those samples before saving")


def _range_warnings(name: str, arr: np.ndarray, expected: tuple[float, float] | None, what: str) -> list[str]:
    if arr.dtype.kind != "f" or arr.size == 0:
        return []
    lo, hi = float(arr.min()), float(arr.max())
    probe = arr.reshape(-1)[:: max(1, arr.size // 200_000)]  # a strided probe keeps big sets cheap
    pixels = lo >= 0 and 1 < hi <= 255 and bool(np.array_equal(probe, np.round(probe)))
    pixel_note = "they look like raw 0..255 pixels; normalize them like the model's training data ((x*scale - mean)/std)"
    if expected is None:
        return [f"{what}: input {name!r} values {lo:g}..{hi:g}: {pixel_note}, unless the model normalizes itself"
                ] if pixels else []
    e_lo, e_hi = expected
    tol = max(1.0, 0.5 * (e_hi - e_lo))  # "far" outside: beyond half the expected span (at least 1)
    if lo < e_lo - tol or hi > e_hi + tol:
        note = pixel_note if pixels else "check the normalization (scale/mean/std)"
        return [f"{what}: input {name!r} spans {lo:.3g}..{hi:.3g}, far outside the expected "
                f"{e_lo:.3g}..{e_hi:.3g}; {note}"]
    if e_hi > e_lo and hi - lo < 0.05 * (e_hi - e_lo):
        return [f"{what}: input {name!r} spans only {lo:.3g}..{hi:.3g} of the expected {e_lo:.3g}..{e_hi:.3g}; "
                "check the normalization (scale/mean/std) and that the samples are not blank"]
    return []


def split_holdout(ds: Dataset, val_fraction: float = 0.3, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Deterministic (calib, val) split, stratified by label when labels exist; both keep source order."""
    if not 0 < val_fraction < 1:
        raise CalibrationError(f"val_fraction={val_fraction} must be between 0 and 1", hint="use e.g. 0.3")
    n = ds.count
    if n < 2:
        raise CalibrationError(f"data {ds.source!r} has {n} sample(s), too few to hold any out for validation",
                               hint="add samples or pass separate validation data with --val")
    perm = np.random.default_rng(seed).permutation(n)
    groups = [perm] if ds.labels is None else [perm[ds.labels[perm] == c] for c in np.unique(ds.labels)]
    val = np.concatenate([g[: int(math.floor(len(g) * val_fraction + 0.5))] for g in groups])
    if len(val) == 0 or len(val) == n:  # tiny sets: still give both sides at least one sample
        val = perm[:1] if len(val) == 0 else val[:-1]
    mask = np.zeros(n, bool)
    mask[val] = True
    return ds.take(~mask), ds.take(mask)
