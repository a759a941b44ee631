"""Real end-to-end conversions: every checkpoint kind, every quant mode, multi-I/O, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.cli import main

from fixture_models import TinyCNN, TwoInTwoOut, image_data, seeded
from stderr_lines import error_lines

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], capsys) -> tuple[int, dict]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    model = seeded(TinyCNN())
    example = torch.randn(1, 3, 32, 32)
    torch.save(model.state_dict(), d / "tiny_sd.pt")
    torch.jit.save(torch.jit.trace(model, example), d / "tiny.ts")
    torch.export.save(torch.export.export(model, (example,)), d / "tiny.pt2")
    torch.save(model, d / "tiny_pickled.pt")
    torch.onnx.export(model, example, d / "tiny_dyn.onnx", opset_version=17, dynamo=False, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch", 2: "h", 3: "w"}})
    np.savez(d / "calib.npz", x=image_data(48))
    np.savez(d / "val.npz", x=image_data(32, seed=1))
    return {"dir": d}


def _common(tiny, out: Path) -> list[str]:
    return ["--profile", "host", "--calib", str(tiny["dir"] / "calib.npz"), "--val", str(tiny["dir"] / "val.npz"),
            "--output", str(out), "--runs", "5"]


@pytest.mark.parametrize("mode", ["fp32", "fp16", "dynamic", "int8", "int16x8"])
def test_each_quant_mode_from_state_dict(tiny, tmp_path, capsys, mode):
    code, rep = _run(["convert", str(tiny["dir"] / "tiny_sd.pt"), "--model-class", "fixture_models:TinyCNN",
                      "--quant", mode, *_common(tiny, tmp_path)], capsys)
    art = Path(rep["artifact"]["path"])
    assert art.exists() and art.name == f"tiny_sd_{mode}.tflite"
    assert rep["quantization"]["mode"] == mode
    assert rep["accuracy"]["top1_agreement"] >= 0.9, rep["accuracy"]
    assert rep["accuracy"]["cosine_mean"] > 0.99
    assert rep["latency"]["host"]["p50_ms"] > 0
    assert code == 0, rep["verdict"]
    if mode == "int8":
        from edgeport.tflite.reader import inspect_model

        info = inspect_model(art)
        assert info["float_ops"] == [], "int8 model must be full integer"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([art.name, art.stem + ".report.json", "report.json", "report.html"])
    html = (tmp_path / "report.html").read_text()
    assert ("PASSED" if code == 0 else "FAILED") in html and "runs_on_validation_data" in html and "<script" not in html


@pytest.mark.parametrize("name,extra", [
    ("tiny.ts", []),
    ("tiny.pt2", []),
    ("tiny_pickled.pt", ["--trust-pickle"]),
    ("tiny_dyn.onnx", ["--input-shape", "x=1x3x32x32"]),
])
def test_each_checkpoint_kind(tiny, tmp_path, capsys, name, extra):
    code, rep = _run(["convert", str(tiny["dir"] / name), "--quant", "int8", *extra, *_common(tiny, tmp_path)], capsys)
    assert code == 0, rep["verdict"]
    assert rep["accuracy"]["top1_agreement"] >= 0.9
    assert Path(rep["artifact"]["path"]).exists()


def test_multi_input_multi_output(tmp_path, capsys):
    model = seeded(TwoInTwoOut())
    torch.save(model.state_dict(), tmp_path / "two.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", image=rng.standard_normal((40, 3, 16, 16)).astype(np.float32),
             vec=rng.standard_normal((40, 8)).astype(np.float32))
    out = tmp_path / "out"
    code, rep = _run(["convert", str(tmp_path / "two.pt"), "--model-class", "fixture_models:TwoInTwoOut",
                      "--input-shape", "image=1x3x16x16", "--input-shape", "vec=1x8", "--quant", "int8",
                      "--profile", "host", "--calib", str(tmp_path / "d.npz"), "--output", str(out), "--runs", "3"], capsys)
    outs = rep["accuracy"]["outputs"]
    assert [o["shape"] for o in outs] == [[12, 4], [12, 6, 8, 8]]  # 30% of 40 held out, NCHW restored
    assert all(o["cosine_mean"] > 0.98 for o in outs), outs
    assert any("held out" in n for n in rep["notes"])
    checks = {c["name"]: c for c in rep["verdict"]["checks"]}
    assert checks["runs_on_validation_data"] == {"name": "runs_on_validation_data", "value": True, "budget": True, "passed": True}
    assert code == (0 if rep["verdict"]["passed"] else 1)


def test_default_model_demo_accuracy(tmp_path, capsys):
    code, rep = _run(["convert", str(REPO / "edgeport/zoo/digits_net.pt"), "--model-class", "edgeport.zoo.digits_net:DigitsNet",
                      "--profile", "raspberry-pi-4", "--calib", "builtin:digits", "--val", "builtin:digits-val",
                      "--output", str(tmp_path), "--runs", "5"], capsys)
    acc = rep["accuracy"]
    assert acc["reference"] >= 0.95 and acc["drop_pp"] <= 1.0, acc
    assert rep["artifact"]["size_bytes"] < 0.5 * rep["reference"]["size_bytes"]
    assert rep["latency"]["simulated"]["p50_ms"] > 0
    assert main(["inspect", rep["artifact"]["path"], "--profile", "coral-usb", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total_macs"] > 1e6 and info["simulated"]["p50_ms"] > 0 and info["edgetpu"]["ops_on_tpu"] > 0
    for key in ("profile", "versions", "timings", "artifact", "reference", "quantization", "accuracy", "latency", "verdict"):
        assert key in rep
    assert rep["data"]["calibration"]["sha256"] and rep["data"]["validation"]["samples"] == 600
    assert code == 0


def _offline_prefix() -> list[str] | None:
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return None


def _offline_run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m edgeport ARGS` in a network namespace (or, without unshare, with sockets refused)."""
    prefix = _offline_prefix()
    env = dict(os.environ)
    if prefix is None:
        # Without a network namespace, make every socket connection fail inside the process tree.
        guard = tmp_path / "guard"
        guard.mkdir()
        (guard / "sitecustomize.py").write_text(
            "import socket\n"
            "def _deny(*a, **k):\n    raise OSError('network disabled by test')\n"
            "socket.socket.connect = _deny\nsocket.create_connection = _deny\n")
        env["PYTHONPATH"] = f"{guard}:{env.get('PYTHONPATH', '')}"
        prefix = []
    env["PYTHONPATH"] = f"{Path(__file__).parent}:{env.get('PYTHONPATH', '')}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return subprocess.run([*prefix, sys.executable, "-m", "edgeport", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=900)


def test_conversion_runs_with_network_disabled(tiny, tmp_path):
    """A 3-channel image input is exactly when onnx2tf 1.x downloads sample images; no network here."""
    proc = _offline_run(["convert", str(tiny["dir"] / "tiny.ts"), "--quant", "int8", *_common(tiny, tmp_path / "out"),
                         "--json"], tmp_path)
    cwd = tmp_path / "cwd"
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout)
    assert rep["accuracy"]["top1_agreement"] >= 0.9
    assert not list(cwd.glob("calibration_image_sample_data*")), "onnx2tf must not fetch or cache sample images"


@pytest.mark.parametrize("mode", ["fp32", "fp16", "dynamic"])
def test_float_export_of_rgb_model_needs_no_data_offline(tmp_path, mode):
    """onnx2tf wants sample images for any all-RGB model; a float export must not need --calib, and
    validation then runs on generated inputs, which the report and the summary say."""
    from fixture_models import mobilenet_v2_like

    model = mobilenet_v2_like(width=0.25, classes=10)
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 32, 32)), tmp_path / "mnv2.ts")
    out = tmp_path / "out"
    proc = _offline_run(["convert", str(tmp_path / "mnv2.ts"), "--profile", "host", "--quant", mode,
                         "--input-shape", "1x3x32x32", "--output", str(out), "--runs", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    assert "generated inputs" in proc.stdout, proc.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["accuracy"]["on_generated_inputs"] is True
    assert rep["data"]["validation"]["generated"] is True and rep["data"]["calibration"] is None
    assert rep["accuracy"]["cosine_mean"] > 0.99
    assert Path(rep["artifact"]["path"]).name == f"mnv2_{mode}.tflite"
    assert not list((tmp_path / "cwd").glob("calibration_image_sample_data*"))


def test_real_data_is_not_reported_as_generated(tiny, tmp_path, capsys):
    code, rep = _run(["convert", str(tiny["dir"] / "tiny.ts"), "--quant", "fp32", *_common(tiny, tmp_path)], capsys)
    assert rep["accuracy"]["on_generated_inputs"] is False and rep["data"]["validation"]["generated"] is False
    assert code == 0


@pytest.fixture(scope="module")
def gelu(tmp_path_factory) -> dict[str, Path]:
    from fixture_models import GeluLayerNormMLP

    d = tmp_path_factory.mktemp("gelu")
    torch.manual_seed(0)
    model = GeluLayerNormMLP().eval()
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 16)), d / "gelu.ts")
    np.savez(d / "data.npz", x=np.random.default_rng(0).standard_normal((120, 16)).astype(np.float32))
    return {"model": d / "gelu.ts", "data": d / "data.npz"}


def test_erf_is_replaced_by_builtin_ops(gelu, tmp_path, capsys, without_rewrites):
    without_rewrites("gelu")  # the subject is the Flex retry; the GELU rewrite makes it unnecessary
    code, rep = _run(["convert", str(gelu["model"]), "--profile", "host", "--quant", "fp32", "--calib", str(gelu["data"]),
                      "--output", str(tmp_path), "--runs", "3"], capsys)
    assert any("Flex" in n and "erf" in n for n in rep["notes"]), rep["notes"]
    checks = {c["name"]: c for c in rep["verdict"]["checks"]}
    assert checks["builtin_ops_only"]["passed"]
    assert rep["accuracy"]["cosine_mean"] > 0.999
    assert code == 0


def test_int8_runtime_abort_is_a_failed_verdict_not_a_pass(gelu, tmp_path, capsys, without_rewrites):
    """LayerNorm's quantized DIV hits its zero point at run time: the model converts but cannot run
    (without the GELU/LayerNorm rewrites, which remove that DIV)."""
    without_rewrites("gelu", "layer_norm")
    code, rep = _run(["convert", str(gelu["model"]), "--profile", "host", "--quant", "int8", "--calib", str(gelu["data"]),
                      "--output", str(tmp_path), "--runs", "3"], capsys)
    checks = {c["name"]: c for c in rep["verdict"]["checks"]}
    assert code == 1 and rep["verdict"]["passed"] is False
    assert not checks["runs_on_validation_data"]["passed"]
    assert "DIV" in checks["runs_on_validation_data"]["detail"]
    assert Path(rep["artifact"]["path"]).exists(), "a failed budget still writes the artifact and report"


@pytest.mark.parametrize("input_name", ["image:0", "gpu_0/data_0"])
def test_foreign_exporter_quirks_are_normalised(tiny, tmp_path, capsys, input_name):
    """Paddle-style node names (`Softmax@0`), tf2onnx-style (`image:0`) and Caffe2-style (`gpu_0/data_0`)
    input names, unnamed nodes, initializers listed as graph inputs and a dynamic batch: all fixed
    before onnx2tf sees them, and the runtime feeds the input the written file names."""
    import onnx
    from onnx import helper

    model = onnx.load(str(tiny["dir"] / "tiny_dyn.onnx"))
    g = model.graph
    for i, node in enumerate(g.node):
        node.name = "" if i % 3 == 0 else f"{node.op_type.lower()}_{i}.tmp_0@{i}"
    old_in = g.input[0].name
    for node in g.node:
        for j, name in enumerate(node.input):
            if name == old_in:
                node.input[j] = input_name
    g.input[0].name = input_name
    for dim, value in zip(g.input[0].type.tensor_type.shape.dim[1:], (3, 32, 32), strict=True):
        dim.Clear()
        dim.dim_value = value
    for init in list(g.initializer)[:3]:
        g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    x = image_data(40)
    np.savez(tmp_path / "d.npz", **{input_name: x})
    code, rep = _run(["convert", str(tmp_path / "foreign.onnx"), "--profile", "host", "--quant", "int8", "--calib",
                      str(tmp_path / "d.npz"), "--output", str(tmp_path / "out"), "--runs", "3"], capsys)
    notes = " ".join(rep["model"]["normalization_notes"])
    assert "renamed" in notes and "initializers" in notes and "batch" in notes
    assert rep["accuracy"]["cosine_mean"] > 0.99
    assert code in (0, 1) and next(c for c in rep["verdict"]["checks"] if c["name"] == "runs_on_validation_data")["passed"]


def test_misconverted_model_never_passes(tmp_path, capsys):
    """onnx2tf 1.28 mis-converts this transformer block's token MLP in float32; validation must say so."""
    from edgeport.zoo.hard_cases import AttnNet

    torch.manual_seed(0)
    torch.jit.save(torch.jit.trace(AttnNet(use_mlp=True).eval(), torch.randn(1, 1, 32, 32)), tmp_path / "attn.ts")
    code, rep = _run(["convert", str(tmp_path / "attn.ts"), "--profile", "host", "--quant", "fp32", "--calib",
                      "builtin:digits", "--val", "builtin:digits-val", "--output", str(tmp_path / "o"), "--runs", "3",
                      "--exporter", "onnx2tf"], capsys)
    assert rep["accuracy"]["snr_db"] < 15
    assert code == 1 and rep["verdict"]["passed"] is False
    check = next(c for c in rep["verdict"]["checks"] if c["name"] == "float_conversion_matches_reference")
    assert not check["passed"] and "conversion error" in check["detail"]
    where = rep["float_conversion"]["first_divergent"]
    assert where and where["pytorch_module"].startswith("mlp"), where  # the token MLP is where onnx2tf goes wrong


def test_integer_token_inputs(tmp_path, capsys):
    """Token ids stay int64 through export, calibration and validation (no float cast)."""
    from torch import nn

    class Emb(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(100, 16)
            self.out = nn.Linear(16, 4)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.out(self.emb(ids).mean(dim=1))

    torch.manual_seed(0)
    torch.jit.save(torch.jit.trace(Emb().eval(), torch.randint(0, 100, (1, 12))), tmp_path / "emb.ts")
    np.savez(tmp_path / "ids.npz", ids=np.random.default_rng(0).integers(0, 100, (60, 12)).astype(np.int64))
    code, rep = _run(["convert", str(tmp_path / "emb.ts"), "--profile", "host", "--quant", "int8", "--calib",
                      str(tmp_path / "ids.npz"), "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    assert rep["model"]["inputs"][0]["dtype"] == "int64"
    assert rep["accuracy"]["cosine_mean"] > 0.99 and code == 0


def test_image_folder_with_preprocessing(tiny, tmp_path, capsys):
    """Class sub-folders give labels; resize/crop/mean/std come from --preprocess and land in the report."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    code, rep = _run(["convert", str(tiny["dir"] / "tiny.ts"), "--profile", "host", "--quant", "int8",
                      "--input-shape", "1x3x32x32", "--calib", str(tmp_path / "imgs"), "--preprocess", "resize=36", "--preprocess", "crop=32",
                      "--preprocess", "mean=0.5,0.5,0.5", "--preprocess", "std=0.25", "--output", str(tmp_path / "o"),
                      "--runs", "3"], capsys)
    pre = rep["data"]["calibration"]["preprocessing"]
    assert pre["resize"] == 36 and list(pre["crop"]) == [32, 32] and list(pre["mean"]) == [0.5, 0.5, 0.5]
    assert rep["data"]["validation"]["labels"] is True
    assert rep["accuracy"]["reference"] is not None and rep["accuracy"]["drop_pp"] is not None
    assert code in (0, 1)


def test_onnx2tf_failure_names_the_node(tmp_path, capsys):
    """A layer onnx2tf 1.28 cannot convert (TopK with k from a tensor): exit 3, one line, node named, nothing written."""
    from torch import nn

    class TopK(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(16, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.topk(self.lin(x), 5)[0]

    torch.manual_seed(0)
    torch.jit.save(torch.jit.trace(TopK().eval(), torch.randn(1, 16)), tmp_path / "topk.ts")
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32))
    code = main(["convert", str(tmp_path / "topk.ts"), "--profile", "host", "--quant", "fp32", "--calib",
                 str(tmp_path / "d.npz"), "--output", str(tmp_path / "o")])
    err = error_lines(capsys.readouterr().err)
    assert code == 3 and len(err) == 1 and "ONNX node '/TopK' (TopK)" in err[0] and "\x1b[" not in err[0], err
    assert not (tmp_path / "o").exists()
