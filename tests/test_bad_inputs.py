"""Issue 12 holes through the real CLI: impossible labels, option checks shared by every command,
third-party errors in one line, and the memory guard. Each case: exit 2, one line naming the
problem, no traceback, nothing written. Unit tests pin the label and memory logic underneath."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from edgeport.cli import main
from edgeport.errors import CalibrationError, InputError, cause_line
from edgeport.export import memory
from edgeport.types import TensorSpec
from edgeport.validate.labels import check_labels

from fixture_models import TinyCNN, TwoInTwoOut, seeded, write_tiny_tflite

HUGE = "1x3x100000x100000"  # ~1 TB of activations in the first conv alone: more than any test machine has


def _onnx(path: Path, outputs: list[str]) -> None:
    """x (1x3x4x4) -> Relu -> fmap (1x3x4x4) and ReduceMean over H, W -> logits (1x3), outputs in the given order."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    info = {"fmap": helper.make_tensor_value_info("fmap", TensorProto.FLOAT, [1, 3, 4, 4]),
            "logits": helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])}
    nodes = [helper.make_node("Relu", ["x"], ["fmap"], name="relu"),
             helper.make_node("ReduceMean", ["fmap"], ["logits"], name="pool", axes=[2, 3], keepdims=0)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [info[o] for o in outputs]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad12")
    two = seeded(TinyCNN(classes=2))
    torch.jit.save(torch.jit.trace(two, torch.randn(1, 3, 16, 16)), d / "two.ts")
    torch.save(seeded(TinyCNN()).state_dict(), d / "sd.pt")
    x = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32)
    np.savez(d / "y50.npz", x=x, y=np.full(40, 50))
    np.savez(d / "yneg.npz", x=x, y=np.r_[np.zeros(39, int), -1])
    np.savez(d / "yfloat.npz", x=x, y=np.linspace(0, 1, 40))
    np.savez(d / "ycount.npz", x=x, y=np.zeros(30, int))
    np.savez(d / "y2d.npz", x=x, y=np.zeros((40, 2), int))
    np.savez(d / "yok.npz", x=x, y=np.arange(40) % 2)
    small = np.random.default_rng(1).standard_normal((40, 3, 4, 4)).astype(np.float32)
    np.savez(d / "small_y.npz", x=small, y=np.arange(40) % 3)
    _onnx(d / "feat.onnx", ["fmap"])
    _onnx(d / "fmap_first.onnx", ["fmap", "logits"])
    for cls in ("a", "b", "c"):  # three class folders for a two-class model: label 2 does not exist
        (d / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(d / "imgs" / cls / f"{i}.png")
    with zipfile.ZipFile(d / "notexport.pt2", "w") as zf:
        zf.writestr("archive/data.txt", "a zip, but not a torch.export program")
    (d / "recipe.toml").write_text('[[pass]]\nkind = "cluster"\nclusters = 16\n')
    write_tiny_tflite(d / "tiny.tflite")
    (d / "truncated.tflite").write_bytes((d / "tiny.tflite").read_bytes()[:40])
    torch.onnx.export(two, torch.randn(1, 3, 16, 16), str(d / "dyn.onnx"), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {2: "H", 3: "W"}})
    names = ["two.ts", "sd.pt", "y50.npz", "yneg.npz", "yfloat.npz", "ycount.npz", "y2d.npz", "yok.npz", "small_y.npz",
             "feat.onnx", "fmap_first.onnx", "imgs", "notexport.pt2", "recipe.toml", "tiny.tflite", "truncated.tflite", "dyn.onnx"]
    return {k: str(d / k) for k in names}


CONV = ["convert", "{two.ts}", "--profile", "host", "--input-shape", "1x3x16x16"]
COMP = ["compress", "{sd.pt}", "--model-class", "fixture_models:TinyCNN", "--recipe", "{recipe.toml}", "--no-latency"]

CASES = [
    # -- convert: labels that cannot score the model (the reported hole: exit 0 PASSED with 0% accuracy)
    ("convert", "labels-out-of-range", [*CONV, "--calib", "{y50.npz}"], r"largest label 50 is out of range: output 'output' has 2 classes"),
    ("convert", "val-labels-out-of-range", [*CONV, "--calib", "{yok.npz}", "--val", "{y50.npz}"], r"'.*y50.npz'.*largest label 50"),
    ("convert", "labels-negative", [*CONV, "--calib", "{yneg.npz}"], r"negative.*largest label 0; output 'output' has 2 classes"),
    ("convert", "labels-float", [*CONV, "--calib", "{yfloat.npz}"], r"not integer.*largest label 1; output 'output' has 2 classes"),
    ("convert", "labels-wrong-count", [*CONV, "--calib", "{ycount.npz}"], r"30 labels for 40 samples.*2 classes"),
    ("convert", "labels-wrong-shape", [*CONV, "--calib", "{y2d.npz}"], r"shape 40x2.*labels score only output 'output'"),
    ("convert", "labels-more-class-folders", [*CONV, "--calib", "{imgs}"], r"largest label 2 is out of range.*2 classes"),
    ("convert", "labels-on-feature-map", ["convert", "{feat.onnx}", "--profile", "host", "--calib", "{small_y.npz}"],
     r"labels score output 'fmap' of shape 1x3x4x4, which is not class scores"),
    ("convert", "labels-multi-output", ["convert", "{fmap_first.onnx}", "--profile", "host", "--calib", "{small_y.npz}"],
     r"first of its 2 outputs.*'fmap'.*make 'logits' the model's first output"),
    # -- convert: options checked by the same code as in bench/compress
    ("convert", "runs-zero", [*CONV, "--runs", "0"], r"--runs 0 must be at least 1"),
    ("convert", "runs-negative", [*CONV, "--runs", "-3"], r"--runs -3 must be at least 1"),
    ("convert", "runs-not-a-number", [*CONV, "--runs", "ten"], r"--runs 'ten' is not a whole number"),
    ("convert", "opset-too-old", [*CONV, "--opset", "7"], r"--opset 7 must be at least 11"),
    ("convert", "opset-too-new", [*CONV, "--opset", "99"], r"--opset 99 must be at most"),
    ("convert", "target-unknown-scheme", [*CONV, "--target", "ftp://pi"], r"ftp://pi"),
    ("convert", "input-shape-zero-dim", ["convert", "{two.ts}", "--profile", "host", "--input-shape", "1x3x0x16"], r"not a shape"),
    # -- convert: third-party errors in one line, memory guard
    ("convert", "pt2-zip-not-export", ["convert", "{notexport.pt2}", "--profile", "host"],
     r"torch.export program .* could not be loaded \(Expected hasRecord"),
    ("convert", "memory-torchscript", ["convert", "{two.ts}", "--profile", "host", "--quant", "fp32", "--input-shape", HUGE],
     r"needs at least [\d,]+ bytes .* but only [\d,]+ bytes .* available"),
    ("convert", "memory-onnx", ["convert", "{dyn.onnx}", "--profile", "host", "--quant", "fp32", "--input-shape", f"x={HUGE}"],
     r"needs at least [\d,]+ bytes .*peak at .*node.* available"),
    # -- bench
    ("bench", "runs-zero", ["bench", "{tiny.tflite}", "--runs", "0"], r"--runs 0 must be at least 1"),
    ("bench", "runs-not-a-number", ["bench", "{tiny.tflite}", "--runs", "1.5"], r"--runs '1.5' is not a whole number"),
    ("bench", "timeout-zero", ["bench", "{tiny.tflite}", "--timeout", "0"], r"--timeout 0 must be a positive"),
    ("bench", "timeout-nan", ["bench", "{tiny.tflite}", "--timeout", "nan"], r"--timeout nan must be a positive"),
    ("bench", "target-unknown-scheme", ["bench", "{tiny.tflite}", "--target", "ftp://pi"], r"ftp://pi"),
    ("bench", "truncated-tflite", ["bench", "{truncated.tflite}"], r"TFLite|flatbuffer|truncated|corrupt"),
    # -- inspect
    ("inspect", "truncated-tflite", ["inspect", "{truncated.tflite}"], r"TFLite|flatbuffer|truncated|corrupt"),
    ("inspect", "directory", ["inspect", "{imgs}"], r"not a file"),
    ("inspect", "unknown-profile", ["inspect", "{tiny.tflite}", "--profile", "pixel-8"], r"pixel-7"),
    # -- compress
    ("compress", "latency-runs-zero", [*COMP, "--data", "{yok.npz}", "--latency-runs", "0"], r"--latency-runs 0 must be at least 1"),
    ("compress", "max-samples-zero", [*COMP, "--data", "{yok.npz}", "--max-samples", "0"], r"--max-samples 0 must be at least 1"),
    ("compress", "input-shape-text", [*COMP, "--data", "{yok.npz}", "--input-shape", "big"], r"not a shape"),
    ("compress", "labels-out-of-range", [*COMP, "--data", "{y50.npz}"], r"largest label 50 is out of range: output 'output' has 5 classes"),
    ("compress", "memory", [*COMP, "--data", "{yok.npz}", "--input-shape", HUGE], r"needs at least [\d,]+ bytes"),
    # -- profiles
    ("profiles", "unknown-action", ["profiles", "delete", "host"], r"invalid choice"),
]


@pytest.mark.parametrize("command,case_id,argv,pattern", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_bad_input(files, tmp_path, capfd, monkeypatch, command, case_id, argv, pattern):
    monkeypatch.chdir(Path(__file__).parent)  # --model-class fixture_models:... is imported from the cwd
    out_dir = tmp_path / "out"
    args = [re.sub(r"\{([^}]+)\}", lambda m: files.get(m.group(1), m.group(0)), a) for a in argv]
    if args[0] in ("convert", "compress"):
        args += ["--output", str(out_dir)]
    code = main(args)
    captured = capfd.readouterr()  # fd level: a library printing from C/C++ would show up here too
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert re.search(pattern, lines[0]), lines[0]
    assert not out_dir.exists(), "a failed run must not leave output behind"


def test_pt2_cause_stays_available_with_debug(files, capfd):
    assert main(["convert", files["notexport.pt2"], "--profile", "host", "--debug"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" in err and "hasRecord" in err


# -- the label rules underneath -------------------------------------------------------------------
LOGITS = [TensorSpec("logits", (1, 10))]


def test_labels_that_fit_pass_and_become_int64():
    y = check_labels(np.array([0.0, 9.0, 3.0]), 3, "d", LOGITS)
    assert y.dtype == np.int64 and y.tolist() == [0, 9, 3]
    assert check_labels(np.array([[1], [2]]), 2, "d", LOGITS).tolist() == [1, 2]  # (N, 1) is N ids


def test_label_just_past_the_last_class_is_refused():
    with pytest.raises(CalibrationError, match=r"largest label 10 is out of range: output 'logits' has 10 classes, ids 0..9"):
        check_labels(np.arange(11), 11, "d", LOGITS)


def test_labels_without_known_outputs_skip_only_the_range_check():
    assert check_labels(np.array([50, 60]), 2, "d").tolist() == [50, 60]
    with pytest.raises(CalibrationError, match="negative"):
        check_labels(np.array([1, -2]), 2, "d")


def test_output_with_unknown_class_count_is_not_refused():
    assert check_labels(np.array([0, 7]), 2, "d", [TensorSpec("o", (1, -1))]).tolist() == [0, 7]


def test_single_logit_output_is_not_class_scores():
    with pytest.raises(CalibrationError, match=r"output 'p' of shape 1x1, which is not class scores.*drop the labels"):
        check_labels(np.array([0, 1]), 2, "d", [TensorSpec("p", (1, 1))])


# -- the memory estimate underneath ---------------------------------------------------------------
def test_torch_estimate_is_the_largest_op_live_set_and_scales_with_pixels():
    model = seeded(TinyCNN())
    small = memory.estimate_torch(model, [TensorSpec("x", (1, 3, 16, 16))])
    # the residual add holds its two 8x16x16 float inputs and its output at once
    assert small.exact and small.peak_bytes == 3 * 8 * 16 * 16 * 4 and "add" in small.where
    assert small.outputs == (TensorSpec("output", (1, 5), "float32"),)
    big = memory.estimate_torch(model, [TensorSpec("x", (1, 3, 64, 64))])
    assert big.peak_bytes == 16 * small.peak_bytes


def test_torch_estimate_allocates_nothing_for_a_huge_shape():
    est = memory.estimate_torch(seeded(TinyCNN()), [TensorSpec("x", (1, 3, 100_000, 100_000))])
    assert est.exact and est.peak_bytes == 3 * 8 * 100_000 * 100_000 * 4  # ~1 TB, computed without allocating it


def test_torch_estimate_sees_every_output():
    est = memory.estimate_torch(seeded(TwoInTwoOut()), [TensorSpec("image", (1, 3, 8, 8)), TensorSpec("vec", (1, 8))])
    assert [o.shape for o in est.outputs] == [(1, 4), (1, 6, 4, 4)]


def test_shape_pass_failure_falls_back_to_the_inputs_floor():
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x[x > 0]  # output size depends on the values: no shape-only answer

    est = memory.estimate_torch(DataDependent(), [TensorSpec("x", (2, 1000))])
    assert not est.exact and est.peak_bytes >= 2 * 1000 * 4


def test_onnx_estimate_matches_torch_on_the_same_graph(files, tmp_path):
    model = seeded(TinyCNN(classes=2))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 16, 16), str(path), dynamo=False, input_names=["x"])
    onnx_est = memory.estimate_onnx(path)
    assert onnx_est.peak_bytes == memory.estimate_torch(model, [TensorSpec("x", (1, 3, 16, 16))]).peak_bytes
    assert "Add" in onnx_est.where


def test_check_fits_compares_with_available_memory():
    est = memory.Estimate(2_000, "aten.add.Tensor")
    memory.check_fits(est, [TensorSpec("x", (1, 10))], available=2_000)
    with pytest.raises(InputError, match=r"needs at least 2,000 bytes .*aten.add.Tensor.* only 1,999 bytes"):
        memory.check_fits(est, [TensorSpec("x", (1, 10))], available=1_999)
    assert memory.available_bytes() > 0


# -- one line from a chatty exception ------------------------------------------------------------
def test_cause_line_skips_pointers_and_boilerplate():
    inner = RuntimeError('Expected hasRecord("version") to be true, but got false.  (Could this error message be improved?  '
                         "If so, please report an enhancement request to PyTorch.)")
    outer = RuntimeError("We ran into an error when deserializing the saved file. Please check the warnings above.")
    outer.__cause__ = inner
    assert cause_line(outer) == 'Expected hasRecord("version") to be true, but got false.'
    assert cause_line(ValueError("\n\n  first real line\nsecond")) == "first real line"
    assert cause_line(KeyError()) == "KeyError"


def test_views_and_in_place_ops_add_no_memory():
    class ViewsOnly(torch.nn.Module):
        def forward(self, x):
            return torch.relu_(x.view(-1).t().reshape(4, 250))

    est = memory.estimate_torch(ViewsOnly(), [TensorSpec("x", (2, 500))])
    assert est.exact and est.peak_bytes == 1000 * 4  # one tensor's storage, never counted twice


@pytest.mark.parametrize("kind", ["torchscript", "exported_program"])
def test_estimate_is_the_same_for_every_torch_checkpoint_kind(kind):
    from edgeport.export.checkpoint import _no_train_toggle

    model = seeded(TinyCNN())
    example = torch.randn(1, 3, 16, 16)
    wrapped = (torch.jit.trace(model, example) if kind == "torchscript"
               else _no_train_toggle(torch.export.export(model, (example,)).module()))
    specs = [TensorSpec("x", (1, 3, 16, 16))]
    assert memory.estimate_torch(wrapped, specs) == memory.estimate_torch(model, specs)


def test_python_api_gives_the_same_option_errors_as_the_cli(files, tmp_path):
    """One check per option: the Python API entry points refuse exactly what the CLI refuses."""
    from edgeport.bench import bench
    from edgeport.compress.command import compress
    from edgeport.pipeline import convert
    from edgeport.runners.common import RunOptions

    with pytest.raises(InputError) as from_convert:
        convert(files["two.ts"], "host", runs=0, output=tmp_path / "o")
    with pytest.raises(InputError) as from_bench:
        bench(Path(files["tiny.tflite"]), "host", opts=RunOptions(runs=0))
    assert from_convert.value.one_line() == from_bench.value.one_line() == "--runs 0 must be at least 1 — e.g. --runs 50"
    with pytest.raises(InputError, match="--opset 99 must be at most"):
        convert(files["two.ts"], "host", opset=99, output=tmp_path / "o")
    with pytest.raises(InputError, match="--timeout -1 must be a positive"):
        bench(Path(files["tiny.tflite"]), "host", opts=RunOptions(timeout_s=-1))
    with pytest.raises(InputError, match="--latency-runs 0 must be at least 1"):
        compress(files["sd.pt"], files["recipe.toml"], files["yok.npz"], tmp_path / "c", latency_runs=0)
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
