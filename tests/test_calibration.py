"""Tests for edgeport.data.calibration: data specs -> arrays, and the checks that guard conversion."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgeport.data.calibration import (
    Dataset,
    builtin_names,
    check_data,
    load_data,
    split_holdout,
)
from edgeport.data.preprocessing import Preprocessing, parse_preprocessing
from edgeport.errors import CalibrationError
from edgeport.types import TensorSpec

IMG = [TensorSpec("x", (1, 3, 8, 8))]
RNG = np.random.default_rng(0)


def normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def save_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def png(path: Path, size: tuple[int, int], mode: str = "RGB", value: int | tuple[int, ...] = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def png_bytes() -> bytes:
    """A real PNG with noisy pixels, so cutting its tail truncates the compressed image data."""
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def error(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CalibrationError) as exc:
        fn(*args, **kw)
    return str(exc.value)


# --- preprocessing -----------------------------------------------------------------------------


def test_parse_preprocessing_values() -> None:
    pre = parse_preprocessing({"mean": "0.5", "std": "[0.25]", "resize": "256", "crop": "224",
                               "scale": "1/255", "color": "Gray", "layout": "nhwc"})
    assert pre == Preprocessing(resize=256, crop=(224, 224), scale=1 / 255, mean=(0.5,), std=(0.25,),
                                color="grayscale", layout="NHWC")
    assert parse_preprocessing(None) == Preprocessing()
    assert parse_preprocessing({"crop": "224x192", "resize": "none"}).crop == (224, 192)
    assert Preprocessing().to_dict()["mean"] == [0.485, 0.456, 0.406]
    lo, hi = Preprocessing(mean=(0.5,), std=(0.5,)).value_range()
    assert (lo, hi) == pytest.approx((-1.0, 1.0))


@pytest.mark.parametrize("options, fix", [
    ({"mean": "a,b"}, "mean=0.485"), ({"std": "0"}, "positive"), ({"resize": "-3"}, "resize=256"),
    ({"crop": "1x2x3"}, "crop=224x224"), ({"scale": "1/0"}, "scale=1/255"), ({"color": "cmyk"}, "grayscale"),
    ({"layout": "NCWH"}, "NHWC"), ({"gamma": "2"}, "use one of"),
])
def test_parse_preprocessing_errors(options: dict[str, str], fix: str) -> None:
    assert fix in error(parse_preprocessing, options)


# --- arrays --------------------------------------------------------------------------------------


def test_npz_single_input_with_labels(tmp_path: Path) -> None:
    x, y = normal(10, 3, 8, 8), np.arange(10) % 3
    ds = load_data(save_npz(tmp_path / "d.npz", x=x, y=y), IMG)
    assert isinstance(ds, Dataset) and ds.count == 10 and ds.preprocessing is None
    np.testing.assert_array_equal(ds.inputs["x"], x)
    assert ds.labels is not None and ds.labels.dtype == np.int64 and list(ds.labels[:4]) == [0, 1, 2, 0]
    assert check_data(ds, IMG) == [f"calibration data {ds.source!r} has only 10 samples; int8 ranges are "
                                   "more reliable with 100+ representative samples"]


def test_npz_single_array_any_name_and_input_name(tmp_path: Path) -> None:
    assert load_data(save_npz(tmp_path / "a.npz", images=normal(9, 3, 8, 8)), IMG).count == 9
    ds = load_data(save_npz(tmp_path / "b.npz", x=normal(2, 3, 8, 8), input=normal(4, 3, 8, 8)),
                   [TensorSpec("input", (1, 3, 8, 8))])
    assert list(ds.inputs) == ["input"] and ds.count == 4  # the input's own name wins over "x"
    msg = error(load_data, save_npz(tmp_path / "c.npz", a=normal(2, 3, 8, 8), b=normal(2, 3, 8, 8)), IMG)
    assert "the file has a, b" in msg and "name the input array 'x'" in msg


def test_npz_multi_input(tmp_path: Path) -> None:
    specs = [TensorSpec("img", (1, 3, 8, 8)), TensorSpec("meta", (1, 4))]
    path = save_npz(tmp_path / "m.npz", meta=normal(6, 4), img=normal(6, 3, 8, 8), y=np.zeros(6, np.int64))
    ds = load_data(path, specs)
    assert list(ds.inputs) == ["img", "meta"] and ds.count == 6 and ds.labels is not None
    msg = error(load_data, save_npz(tmp_path / "n.npz", img=normal(6, 3, 8, 8), x=normal(6, 4)), specs)
    assert "missing arrays for inputs meta" in msg and "the file has img, x" in msg and "np.savez(path, img=..., meta=...)" in msg
    msg = error(load_data, save_npz(tmp_path / "o.npz", img=normal(6, 3, 8, 8), meta=normal(5, 4)), specs)
    assert "img=6, meta=5" in msg and "same number of samples" in msg


def test_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", normal(8, 3, 8, 8))
    assert load_data(str(tmp_path / "d.npy"), IMG).count == 8
    msg = error(load_data, str(tmp_path / "d.npy"), [TensorSpec("a", (1, 3, 8, 8)), TensorSpec("b", (1, 2))])
    assert ".npz with one array per input name" in msg


def test_int_data_converted_with_pixel_warning(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (12, 3, 8, 8)).astype(np.uint8)
    ds = load_data(save_npz(tmp_path / "u.npz", x=x), IMG)
    assert ds.inputs["x"].dtype == np.float32
    warnings = check_data(ds, IMG, min_samples=4)
    assert any("raw 0..255 pixels" in w and "normalize" in w for w in warnings)
    far = check_data(ds, IMG, min_samples=4, expected_range=(-2.1, 2.6))
    assert any("far outside the expected" in w and "0..255" in w for w in far)
    ok = load_data(save_npz(tmp_path / "n.npz", x=normal(12, 3, 8, 8)), IMG)
    assert not [w for w in check_data(ok, IMG, min_samples=4, expected_range=(-2.1, 2.6)) if "expected" in w]
    narrow = load_data(save_npz(tmp_path / "z.npz", x=np.zeros((12, 3, 8, 8), np.float32)), IMG)
    assert any("spans only" in w for w in check_data(narrow, IMG, min_samples=4, expected_range=(-1, 1)))


def test_integer_model_inputs(tmp_path: Path) -> None:
    spec = [TensorSpec("ids", (1, 5), "int64")]
    ds = load_data(save_npz(tmp_path / "i.npz", x=np.ones((3, 5), np.float64)), spec)
    assert ds.inputs["ids"].dtype == np.int64
    assert "whole numbers" in error(load_data, save_npz(tmp_path / "f.npz", x=np.full((3, 5), 0.5)), spec)
    spec8 = [TensorSpec("q", (1, 2), "int8")]
    assert "within -128..127" in error(load_data, save_npz(tmp_path / "b.npz", x=np.full((3, 2), 300)), spec8)


@pytest.mark.parametrize("shape, layout, expected", [
    ((4, 8, 8, 3), "NCHW", ["looks like NHWC", "pass NCHW", "transpose(0, 3, 1, 2)"]),
    ((4, 3, 8, 8), "NHWC", ["looks like NCHW", "transpose(0, 2, 3, 1)"]),
    ((4, 1, 8, 8), "NCHW", ["1 channel(s) instead of 3", "np.repeat"]),
    ((4, 3, 16, 16), "NCHW", ["per-sample shape 3x16x16", "model expects 3x8x8", "(N, 3x8x8)"]),
    ((3, 8, 8), "NCHW", ["without a batch axis", "x[None]"]),
])
def test_shape_errors(tmp_path: Path, shape: tuple[int, ...], layout: str, expected: list[str]) -> None:
    spec = IMG if layout == "NCHW" else [TensorSpec("x", (1, 8, 8, 3))]
    msg = error(load_data, save_npz(tmp_path / "s.npz", x=normal(*shape)), spec, Preprocessing(layout=layout))
    for text in expected:
        assert text in msg


def test_check_data_rechecks_structure(tmp_path: Path) -> None:
    ds = load_data(save_npz(tmp_path / "d.npz", x=normal(10, 3, 8, 8)), IMG)
    nhwc = Dataset({"x": normal(10, 8, 8, 3)}, None, "made-by-hand", "", None)
    assert "looks like NHWC" in error(check_data, nhwc, IMG)
    assert "no arrays for model inputs other" in error(check_data, ds, [TensorSpec("other", (1, 3, 8, 8))])


def test_dynamic_dims_and_big_batch(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "d.npz", x=normal(5, 3, 8, 6))
    assert load_data(path, [TensorSpec("x", (-1, 3, -1, 0))]).count == 5
    assert load_data(path, [TensorSpec("x", (4, 3, 8, 6))]).count == 5  # batch dim is not the sample count


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_bytes(b"not a zip"), ["cannot read", "np.savez"]),
    (lambda p: np.savez(p, x=np.array([{"a": 1}], dtype=object)), ["cannot read", "no pickled objects"]),
    (lambda p: np.savez(p, x=np.array([["a", "b"]])), ["holds text", "np.savez"]),
    (lambda p: np.savez(p, x=np.ones((3, 3, 8, 8), np.complex64)), ["complex numbers"]),
    (lambda p: np.savez(p, x=np.float32(3)), ["without a batch axis", "leading axis"]),
])
def test_unreadable_arrays(tmp_path: Path, make, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.npz"
    make(path)
    msg = error(load_data, str(path), IMG)
    for text in expected:
        assert text in msg


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    assert "builtin:NAME" in error(load_data, str(tmp_path / "nope.npz"), IMG)
    assert "not found" in error(load_data, "", IMG)
    (tmp_path / "d.csv").write_text("1,2")
    assert "unsupported type '.csv'" in error(load_data, str(tmp_path / "d.csv"), IMG)
    png(tmp_path / "one.png", (8, 8))
    assert "pass the folder" in error(load_data, str(tmp_path / "one.png"), IMG)


def test_labels_errors(tmp_path: Path) -> None:
    x = normal(6, 3, 8, 8)
    assert "5 labels for 6 samples" in error(load_data, save_npz(tmp_path / "a.npz", x=x, y=np.arange(5)), IMG)
    msg = error(load_data, save_npz(tmp_path / "b.npz", x=x, y=np.full(6, 0.5)), IMG)
    assert "not integer class ids" in msg and "int64" in msg
    assert "argmax" in error(load_data, save_npz(tmp_path / "c.npz", x=x, y=np.eye(6)), IMG)
    assert "negative" in error(load_data, save_npz(tmp_path / "d.npz", x=x, y=-np.ones(6)), IMG)
    ds = load_data(save_npz(tmp_path / "e.npz", x=x, y=np.arange(6.0)), IMG)  # whole floats are accepted
    assert ds.labels is not None and ds.labels.dtype == np.int64


def test_nan_inf_and_min_samples(tmp_path: Path) -> None:
    x = normal(10, 3, 8, 8)
    x[3, 0, 0, 0], x[7, 1, 2, 2], x[7, 0, 0, 0] = np.nan, np.inf, -np.inf
    ds = load_data(save_npz(tmp_path / "n.npz", x=x), IMG)
    msg = error(check_data, ds, IMG)
    assert "3 NaN/Inf value(s), first in sample 3" in msg and "drop those samples" in msg
    few = load_data(save_npz(tmp_path / "f.npz", x=normal(5, 3, 8, 8)), IMG)
    msg = error(check_data, few, IMG, role="validation")
    assert "validation data" in msg and "has 5 sample(s); at least 8 are needed" in msg and "add at least 3" in msg
    assert check_data(few, IMG, role="validation", min_samples=2) == [
        f"validation data {few.source!r} has no labels: accuracy is judged only by agreement with the reference model"]


def test_max_samples_keeps_first(tmp_path: Path) -> None:
    x, y = normal(20, 3, 8, 8), np.arange(20)
    ds = load_data(save_npz(tmp_path / "d.npz", x=x, y=y), IMG, max_samples=7)
    np.testing.assert_array_equal(ds.inputs["x"], x[:7])
    assert list(ds.labels) == list(range(7))  # type: ignore[arg-type]
    assert "positive" in error(load_data, str(tmp_path / "d.npz"), IMG, max_samples=0)


# --- image folders -------------------------------------------------------------------------------


def make_classes(root: Path) -> None:
    png(root / "dog" / "b.png", (12, 10), value=(10, 20, 30))
    png(root / "dog" / "a.PNG", (8, 8), value=(200, 100, 0))
    png(root / "cat" / "z.png", (16, 8), mode="L", value=50)  # grayscale file fed to an RGB model
    Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "cat" / "y.JPG")
    (root / "cat" / "notes.txt").write_text("ignored")
    png(root / ".hidden" / "x.png", (8, 8))


def test_image_folder_with_classes(tmp_path: Path) -> None:
    make_classes(tmp_path)
    ds = load_data(str(tmp_path), IMG)
    assert ds.class_names == ("cat", "dog")
    assert ds.inputs["x"].shape == (4, 3, 8, 8) and ds.inputs["x"].dtype == np.float32
    assert list(ds.labels) == [0, 1, 0, 1]  # type: ignore[arg-type]  # classes interleaved round-robin
    first_dog = ds.inputs["x"][1, :, 0, 0]  # dog/a.PNG: a flat (200, 100, 0) image
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(first_dog, (np.array([200, 100, 0]) / 255 - mean) / std, rtol=1e-5)
    gray = ds.inputs["x"][2]  # cat/z.png: grayscale 50 replicated into 3 channels
    np.testing.assert_allclose(gray[:, 4, 4], (50 / 255 - mean) / std, rtol=1e-5)
    assert ds.preprocessing is not None and ds.preprocessing["crop"] == [8, 8]
    assert check_data(ds, IMG, min_samples=4)[0].endswith("representative samples")
    subset = load_data(str(tmp_path), IMG, max_samples=2)
    assert list(subset.labels) == [0, 1]  # type: ignore[arg-type]


def test_image_folder_grayscale_nhwc_bgr_resize(tmp_path: Path) -> None:
    for i in range(3):
        png(tmp_path / f"{i}.png", (20, 10), mode="L", value=i * 100)
    pre = parse_preprocessing({"color": "grayscale", "mean": "0.5", "std": "0.5", "layout": "NHWC", "resize": "8"})
    ds = load_data(str(tmp_path), [TensorSpec("g", (1, 8, 8, 1))], pre)
    assert ds.labels is None and ds.class_names is None and ds.inputs["g"].shape == (3, 8, 8, 1)
    np.testing.assert_allclose(ds.inputs["g"][2, 3, 3, 0], (200 / 255 - 0.5) / 0.5, rtol=1e-5)
    rgb = tmp_path / "rgb"
    png(rgb / "p.png", (8, 8), value=(255, 0, 0))
    bgr = load_data(str(rgb), IMG, Preprocessing(color="bgr", mean=(0.0,), std=(1.0,)))
    np.testing.assert_allclose(bgr.inputs["x"][0, :, 0, 0], [0, 0, 1])


@pytest.mark.parametrize("setup, spec, pre, expected", [
    (lambda p: None, IMG, None, ["no images", "point at a folder"]),
    (lambda p: p.joinpath("bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), IMG, None,
     ["cannot read image", "bad.png", "remove or replace"]),
    (lambda p: p.joinpath("cut.png").write_bytes(png_bytes()[:-40]), IMG, None, ["cut.png", "remove or replace"]),
    (lambda p: (png(p / "a" / "1.png", (8, 8)), (p / "b").mkdir()), IMG, None, ["b hold no images", "remove them"]),
    (lambda p: (png(p / "a" / "1.png", (8, 8)), png(p / "2.png", (8, 8))), IMG, None, ["both at the top level"]),
    (lambda p: png(p / "1.png", (8, 8)), [TensorSpec("x", (1, 1, 8, 8))], None, ["color=grayscale"]),
    (lambda p: png(p / "1.png", (8, 8)), [TensorSpec("x", (1, 1, 8, 8))], Preprocessing(color="grayscale"),
     ["mean has 3 values", "mean=0.5"]),
    (lambda p: png(p / "1.png", (8, 8)), IMG, Preprocessing(crop=(6, 6)), ["crop 6x6", "crop=8x8"]),
    (lambda p: png(p / "1.png", (8, 8)), IMG, Preprocessing(resize=4), ["resize >= 8"]),
    (lambda p: png(p / "1.png", (8, 8)), [TensorSpec("a", (1, 3, 8, 8)), TensorSpec("b", (1, 2))], None,
     ["single-input", "np.savez"]),
    (lambda p: png(p / "1.png", (8, 8)), [TensorSpec("v", (1, 10))], None, ["4-D image input", ".npz"]),
    (lambda p: png(p / "1.png", (8, 8)), [TensorSpec("x", (1, 3, -1, -1))], None, ["crop=HxW"]),
])
def test_image_folder_errors(tmp_path: Path, setup, spec: list[TensorSpec], pre: Preprocessing | None,  # type: ignore[no-untyped-def]
                             expected: list[str]) -> None:
    setup(tmp_path)
    msg = error(load_data, str(tmp_path), spec, pre)
    for text in expected:
        assert text in msg


def test_image_folder_dynamic_size_with_crop(tmp_path: Path) -> None:
    png(tmp_path / "1.png", (30, 20))
    ds = load_data(str(tmp_path), [TensorSpec("x", (1, 3, -1, -1))], Preprocessing(resize=12, crop=(10, 12)))
    assert ds.inputs["x"].shape == (1, 3, 10, 12)


# --- builtin -------------------------------------------------------------------------------------


def test_builtin_digits() -> None:
    assert {"digits", "digits-val"} <= set(builtin_names())
    spec = [TensorSpec("x", (1, 1, 32, 32))]
    ds = load_data("builtin:digits", spec)
    assert ds.inputs["x"].shape == (1197, 1, 32, 32) and ds.inputs["x"].dtype == np.float32
    assert ds.labels is not None and ds.labels.shape == (1197,) and set(ds.labels) == set(range(10))
    assert ds.inputs["x"].min() == pytest.approx(-1.0) and ds.inputs["x"].max() == pytest.approx(1.0)
    assert ds.preprocessing is not None and ds.preprocessing["color"] == "grayscale"
    assert check_data(ds, spec) == []
    val = load_data("builtin:digits-val", spec, max_samples=50)
    assert val.count == 50 and val.sha256 != ds.sha256
    nhwc = load_data("builtin:digits", [TensorSpec("x", (1, 32, 32, 1))], Preprocessing(layout="NHWC"))
    np.testing.assert_array_equal(nhwc.inputs["x"], ds.inputs["x"].transpose(0, 2, 3, 1))


def test_builtin_errors() -> None:
    msg = error(load_data, "builtin:imagenet", [TensorSpec("x", (1, 1, 32, 32))])
    assert "unknown built-in data set 'imagenet'" in msg and "builtin:digits, builtin:digits-val" in msg
    msg = error(load_data, "builtin:digits", [TensorSpec("x", (1, 3, 224, 224))])
    assert "1x32x32" in msg and "3x224x224" in msg


# --- provenance and splitting --------------------------------------------------------------------


def test_sha256_is_deterministic_and_tracks_content(tmp_path: Path) -> None:
    x = normal(10, 3, 8, 8)
    a = load_data(save_npz(tmp_path / "a.npz", x=x, y=np.arange(10)), IMG)
    b = load_data(save_npz(tmp_path / "b.npz", x=x, y=np.arange(10)), IMG)
    c = load_data(save_npz(tmp_path / "c.npz", x=x), IMG)
    assert a.sha256 == b.sha256 != c.sha256 and len(a.sha256) == 64
    sub = a.take(np.arange(5))
    assert sub.count == 5 and sub.sha256 not in (a.sha256, a.take(np.arange(1, 6)).sha256)
    assert a.take(np.arange(10) < 5).sha256 == sub.sha256


def test_split_holdout_deterministic_and_stratified() -> None:
    ds = load_data("builtin:digits", [TensorSpec("x", (1, 1, 32, 32))])
    calib, val = split_holdout(ds, 0.3, seed=0)
    again = split_holdout(ds, 0.3, seed=0)
    assert (calib.sha256, val.sha256) == (again[0].sha256, again[1].sha256)
    assert split_holdout(ds, 0.3, seed=1)[1].sha256 != val.sha256
    assert calib.count + val.count == ds.count and abs(val.count - 0.3 * ds.count) <= 10
    assert set(val.labels) == set(range(10))  # type: ignore[arg-type]
    tiny = ds.take(np.arange(2))
    assert [d.count for d in split_holdout(tiny, 0.01)] == [1, 1]
    assert "--val" in error(split_holdout, ds.take(np.arange(1)))
    assert "between 0 and 1" in error(split_holdout, ds, 1.0)


# --- property: whatever comes in, the only failure is a CalibrationError -------------------------

DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int64", "bool", "complex64", "U3", "O", "M8[s]"]
SPEC_DTYPES = ["float32", "float16", "int64", "uint8", "int8", "bool", "string"]


@st.composite
def random_case(draw: st.DrawFn) -> tuple[np.ndarray, list[TensorSpec], str]:
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    if dtype == "O":
        arr = np.empty(shape, dtype=object)
    else:
        raw = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=4))
        with np.errstate(all="ignore"):
            arr = np.resize(np.asarray(raw, np.float64), shape).astype(dtype if dtype != "M8[s]" else "int64")
        arr = arr.astype(dtype) if dtype == "M8[s]" else arr
    if ndim and draw(st.booleans()):  # often a fitting model input, so the later checks are reached too
        spec_shape = (draw(st.integers(-1, 4)), *shape[1:])
    else:
        spec_ndim = draw(st.integers(0, 4))
        spec_shape = tuple(draw(st.lists(st.integers(-1, 4), min_size=spec_ndim, max_size=spec_ndim)))
    spec = [TensorSpec(draw(st.sampled_from(["x", "y", "in"])), spec_shape, draw(st.sampled_from(SPEC_DTYPES)))]
    if draw(st.integers(0, 3)) == 0:
        spec.append(TensorSpec("z", spec_shape))
    kind = draw(st.sampled_from(["npz", "npz", "npy", "npz-labels", "npz-labels", "text", "builtin"]))
    return arr, spec, kind


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=random_case(), text=st.text(max_size=30),
       options=st.dictionaries(st.sampled_from(["layout", "mean", "color", "crop", "bogus"]), st.text(max_size=8),
                               max_size=2) | st.just({}) | st.just({}) | st.just({}))
def test_only_calibration_errors_escape(case: tuple[np.ndarray, list[TensorSpec], str], text: str,
                                        options: dict[str, str]) -> None:
    arr, spec, kind = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if kind.startswith("npz"):
            extra = {"y": arr.reshape(-1)[:3]} if kind == "npz-labels" else {}
            np.savez(root / "d.npz", x=arr, **extra)
            source = str(root / "d.npz")
        elif kind == "npy":
            np.save(root / "d.npy", arr)
            source = str(root / "d.npy")
        elif kind == "builtin":
            source = "builtin:" + text
        else:  # random text as a path, kept inside the temp dir so it never names a real folder
            # one path component without leading dots, so it can never climb out to a real folder
            source = str(root / (text.replace("\0", "").replace("/", "_").lstrip(".") or "missing"))
        try:
            pre = parse_preprocessing(options) if options else None
            ds = load_data(source, spec, pre, max_samples=3 if kind == "npz-labels" else None)
            check_data(ds, spec, min_samples=1, expected_range=(-1.0, 1.0))
            split_holdout(ds)
        except CalibrationError as e:
            assert "\n" not in str(e)
