"""Image folders -> model-input arrays (Pillow), and the per-channel normalization they share.

Split out of calibration.py to keep both modules small; calibration.load_data is the only caller.
Nothing here skips a file silently: an unreadable image is an error that names it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.data.preprocessing import Preprocessing
from edgeport.errors import CalibrationError
from edgeport.types import TensorSpec

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def normalize(arr: np.ndarray, pre: Preprocessing, axis: int, what: str) -> np.ndarray:
    """(x * scale - mean) / std per channel along `axis`; a single mean/std value is broadcast."""
    shape = [1] * arr.ndim
    shape[axis] = arr.shape[axis]
    for key, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) not in (1, arr.shape[axis]):
            raise CalibrationError(f"{what}: {key} has {len(values)} values but the images have {arr.shape[axis]} "
                                   f"channel(s) (color={pre.color})",
                                   hint=f"pass one {key} value per channel or a single value, e.g. {key}=0.5")
    mean = np.asarray(pre.mean, np.float32).reshape(shape if len(pre.mean) > 1 else [1] * arr.ndim)
    std = np.asarray(pre.std, np.float32).reshape(shape if len(pre.std) > 1 else [1] * arr.ndim)
    return (arr.astype(np.float32) * np.float32(pre.scale) - mean) / std


def _image_geometry(spec: TensorSpec, pre: Preprocessing, what: str) -> tuple[int, int]:
    """Model HxW for an image folder, after checking channels, crop and mean/std against the model."""
    if len(spec.shape) != 4:
        raise CalibrationError(f"{what}: image folders need a 4-D image input, but {spec.describe()}",
                               hint="save the data as an .npz instead")
    c, h, w = spec.shape[1:] if pre.layout == "NCHW" else (spec.shape[3], *spec.shape[1:3])
    model_hw = f"{h if h > 0 else '?'}x{w if w > 0 else '?'}"
    if pre.crop is None and (h <= 0 or w <= 0):
        raise CalibrationError(f"{what}: model input {spec.name!r} has no fixed height/width ({model_hw})",
                               hint="pass crop=HxW or export with --input-shape")
    if pre.crop is not None:
        if (h > 0 and pre.crop[0] != h) or (w > 0 and pre.crop[1] != w):
            raise CalibrationError(f"{what}: crop {pre.crop[0]}x{pre.crop[1]} does not match the model input "
                                   f"{model_hw}", hint=f"drop crop or set crop={model_hw}")
        h, w = pre.crop
    if c > 0 and c != pre.channels:
        raise CalibrationError(f"{what}: model input {spec.name!r} has {c} channel(s) but color={pre.color} gives "
                               f"{pre.channels}", hint="use color=grayscale for 1 channel or color=rgb|bgr for 3, "
                                                       "with one mean/std value per channel")
    if pre.resize is not None and pre.resize < min(h, w):
        raise CalibrationError(f"{what}: resize={pre.resize} is smaller than the crop {h}x{w}",
                               hint=f"use resize >= {max(h, w)} or drop resize")
    normalize(np.zeros((1, pre.channels)), pre, 1, what)  # mean/std vs channels, before decoding anything
    return h, w


def _scan_folder(path: Path, what: str) -> tuple[list[Path], np.ndarray | None, tuple[str, ...] | None]:
    """Image files in a stable order, with class ids from sorted sub-folder names when there are any."""
    def images(folder: Path, recursive: bool) -> list[Path]:
        found = [p for p in (folder.rglob("*") if recursive else folder.iterdir())
                 if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
        return sorted(found, key=lambda p: p.relative_to(folder).as_posix())

    try:
        top = images(path, recursive=False)
        dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        per_class = {d.name: images(d, recursive=True) for d in dirs}
    except OSError as e:
        raise CalibrationError(f"cannot read image folder {what}: {e}", hint="check the folder's permissions") from None
    if not any(per_class.values()):
        if not top:
            raise CalibrationError(f"{what}: no images ({' '.join(IMAGE_EXTS)}) in the folder or its sub-folders",
                                   hint="point at a folder of images, or of class sub-folders of images")
        return top, None, None
    if top:
        raise CalibrationError(f"{what}: images both at the top level and in class sub-folders",
                               hint="move top-level images into a class folder, or use a flat folder")
    if empty := [name for name, files in per_class.items() if not files]:
        raise CalibrationError(f"{what}: class folder(s) {', '.join(empty)} hold no images",
                               hint="remove them or add images (class ids follow the sorted folder names)")
    order = [(files[j], i) for j in range(max(map(len, per_class.values())))
             for i, files in enumerate(per_class.values()) if j < len(files)]
    return [f for f, _ in order], np.array([i for _, i in order], np.int64), tuple(per_class)


def _load_image(path: Path, pre: Preprocessing, h: int, w: int, what: str) -> np.ndarray:
    from PIL import Image  # imported here: only image folders need Pillow

    try:
        with Image.open(path) as im:
            im.load()  # decode now so a truncated file fails here, naming the file
            img = im.convert("L" if pre.color == "grayscale" else "RGB")
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for corrupt files
        raise CalibrationError(f"{what}: cannot read image {path}: {e}",
                               hint="remove or replace that file (edgeport never skips images silently)") from None
    if pre.resize is None:
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    else:
        ratio = pre.resize / min(img.size)
        nw, nh = max(1, round(img.size[0] * ratio)), max(1, round(img.size[1] * ratio))
        if nw < w or nh < h:
            raise CalibrationError(f"{what}: image {path} is {nw}x{nh} after resize={pre.resize}, smaller than "
                                   f"the crop {w}x{h} (WxH)", hint=f"use resize >= {max(h, w)} or drop resize")
        left, top = int(round((nw - w) / 2)), int(round((nh - h) / 2))  # torchvision's centre-crop rounding
        img = img.resize((nw, nh), Image.Resampling.BILINEAR).crop((left, top, left + w, top + h))
    arr = np.asarray(img, np.float32).reshape(h, w, -1)
    arr = normalize(arr[..., ::-1] if pre.color == "bgr" else arr, pre, 2, what)
    return arr.transpose(2, 0, 1) if pre.layout == "NCHW" else arr


def read_folder(what: str, path: Path, spec: TensorSpec, pre: Preprocessing, max_samples: int | None
                ) -> tuple[dict[str, np.ndarray], Any, dict[str, Any], tuple[str, ...] | None]:
    """({input: (N, ...) float32}, labels or None, preprocessing applied, class names or None)."""
    h, w = _image_geometry(spec, pre, what)
    files, labels, class_names = _scan_folder(path, what)
    files = files[:max_samples]  # applied before decoding, so large folders stay cheap
    shape = (len(files), pre.channels, h, w) if pre.layout == "NCHW" else (len(files), h, w, pre.channels)
    out = np.empty(shape, np.float32)
    for i, f in enumerate(files):
        out[i] = _load_image(f, pre, h, w, what)
    labels = None if labels is None else labels[: len(files)]
    return {spec.name: out}, labels, replace(pre, crop=(h, w)).to_dict(), class_names
