"""Checkpoints as GPU training leaves them (issue 23): containers, wrapper prefixes, raw beside EMA
weights, half precision, and storages saved on cuda.

There is no GPU here. The cuda forms are built by faking the storage device where torch writes it:
the location string of each storage in a torch.save/torch.jit.save pickle (`cpu` -> `cuda:0`, a
length-prefixed string, so the pickle stays valid), and the device records of a torch.export
archive's JSON (`{"type": "cpu"}` -> `{"type": "cuda", "index": 0}`). A CPU-only torch fails on these
files exactly as on real GPU files ("Torch not compiled with CUDA enabled").
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.cli import main
from edgeport.errors import InputError
from edgeport.export.checkpoint import load_checkpoint

from fixture_models import TinyCNN, image_data, seeded

CLASS = "fixture_models:TinyCNN"
X = torch.from_numpy(image_data(4, (3, 16, 16)))


def _model() -> torch.nn.Module:
    return seeded(TinyCNN()).eval()


def _on_cuda(blob: bytes) -> bytes:
    """A torch.save / jit.save zip whose storages say they were saved on cuda:0."""
    src, out = zipfile.ZipFile(io.BytesIO(blob)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith(".pkl"):
                # BINUNICODE 'cpu' (4-byte length prefix) -> 'cuda:0'
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(info, data)
    return out.getvalue()


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _pt2_on_cuda(program, path: Path, torch_version: str | None = None) -> Path:
    buf = io.BytesIO()
    torch.export.save(program, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith(".json"):
                data = data.replace(b'{"type": "cpu", "index": null}', b'{"type": "cuda", "index": 0}')
                if torch_version and "/models/" in info.filename:
                    doc = json.loads(data)
                    doc["torch_version"] = torch_version
                    data = json.dumps(doc).encode()
            elif info.filename.endswith(".pt"):
                data = _on_cuda(data)
            dst.writestr(info, data)
    return path


def _sd() -> dict:
    return _model().state_dict()


def _ema_sd() -> dict:
    torch.manual_seed(5)
    return {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in _sd().items()}


FORMS = {
    "state_dict on cuda": lambda: _on_cuda(_saved(_sd())),
    "tutorial dict": lambda: _saved({"epoch": 3, "model_state_dict": _sd(), "optimizer_state_dict": {"state": {}}}),
    "torch.compile": lambda: _saved(torch.compile(_model()).state_dict()),
    "DataParallel": lambda: _on_cuda(_saved(torch.nn.DataParallel(_model()).state_dict())),
    "DDP + torch.compile": lambda: _saved({f"module._orig_mod.{k}": v for k, v in _sd().items()}),
    "Lightning": lambda: _saved({"epoch": 1, "state_dict": {**{f"model.{k}": v for k, v in _sd().items()},
                                                           "criterion.weight": torch.ones(5)}}),
    "net container": lambda: _saved({"net": {f"net.{k}": v for k, v in _sd().items()}}),
}


@pytest.mark.parametrize("form", FORMS)
def test_each_form_loads_the_same_weights(tmp_path, form):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(FORMS[form]())
    loaded = load_checkpoint(path, CLASS)
    assert loaded.kind == "state_dict" and loaded.dtype == "float32"
    with torch.no_grad():
        assert torch.equal(loaded.module(X), _model()(X)), form
    prefixed = form in ("torch.compile", "DataParallel", "DDP + torch.compile", "Lightning", "net container")
    assert any("prefix" in n for n in loaded.notes) == prefixed, loaded.notes
    if form == "Lightning":
        assert any("criterion.weight" in n for n in loaded.notes), "keys left out are named"


def test_raw_and_ema_say_which_was_used_and_weights_picks(tmp_path):
    path = tmp_path / "timm.pt"
    path.write_bytes(_saved({"state_dict": _sd(), "state_dict_ema": _ema_sd()}))
    by_default = load_checkpoint(path, CLASS)
    raw = load_checkpoint(path, CLASS, weights="raw")
    ema = load_checkpoint(path, CLASS, weights="ema")
    assert "loaded the EMA weights from 'state_dict_ema'" in by_default.notes[0]
    assert "loaded the raw weights from 'state_dict'" in raw.notes[0]
    with torch.no_grad():
        assert torch.equal(raw.module(X), _model()(X))
        assert torch.equal(ema.module(X), by_default.module(X))
        assert not torch.equal(ema.module(X), raw.module(X)), "EMA and raw weights differ"


def test_averaged_model_ema_is_unwrapped(tmp_path):
    avg = torch.optim.swa_utils.AveragedModel(_model())  # 'module.' keys plus its n_averaged counter
    path = tmp_path / "ema.pt"
    path.write_bytes(_saved({"model": _sd(), "model_ema": avg.state_dict()}))
    loaded = load_checkpoint(path, CLASS, weights="ema")
    assert any("n_averaged" in n for n in loaded.notes), loaded.notes
    with torch.no_grad():
        assert torch.equal(loaded.module(X), _model()(X))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_state_dict_records_its_dtype(tmp_path, dtype):
    half = {k: v.to(dtype) if v.is_floating_point() else v for k, v in _sd().items()}
    path = tmp_path / "half.pt"
    path.write_bytes(_on_cuda(_saved(half)))
    loaded = load_checkpoint(path, CLASS)
    name = str(dtype).replace("torch.", "")
    assert loaded.dtype == name and any(f"stored as {name}" in n for n in loaded.notes)
    ref = _model()
    ref.load_state_dict(half)  # the same rounding, in the float32 model
    with torch.no_grad():
        assert torch.equal(loaded.module(X), ref(X))


def test_partial_match_keeps_todays_one_line(tmp_path):
    sd = {f"_orig_mod.{k}": v for k, v in _sd().items() if not k.startswith("head.")}
    path = tmp_path / "partial.pt"
    path.write_bytes(_saved(sd))
    with pytest.raises(InputError) as err:
        load_checkpoint(path, CLASS)
    line = err.value.one_line()
    assert "does not match fixture_models:TinyCNN" in line and "_orig_mod.stem.0.weight" in line
    assert "\n" not in line


def test_weights_flag_errors_name_the_cause(tmp_path):
    plain = tmp_path / "sd.pt"
    plain.write_bytes(_saved(_sd()))
    with pytest.raises(InputError, match="no EMA weights"):
        load_checkpoint(plain, CLASS, weights="ema")
    assert load_checkpoint(plain, CLASS, weights="raw").kind == "state_dict"
    only_ema = tmp_path / "ema_only.pt"
    only_ema.write_bytes(_saved({"ema": _sd()}))
    with pytest.raises(InputError, match="holds no raw weights"):
        load_checkpoint(only_ema, CLASS, weights="raw")
    ts = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(_model(), X[:1]), ts)
    with pytest.raises(InputError, match="torchscript with one set of weights"):
        load_checkpoint(ts, weights="ema")


def test_whole_module_and_jit_trace_saved_on_cuda(tmp_path):
    pickled = tmp_path / "whole.pt"
    pickled.write_bytes(_on_cuda(_saved(_model())))
    traced = tmp_path / "traced.ts"
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(_model(), X[:1]), buf)
    traced.write_bytes(_on_cuda(buf.getvalue()))
    with pytest.raises(Exception, match="CUDA"):  # the fake is real: a plain load needs a GPU
        torch.jit.load(io.BytesIO(traced.read_bytes()))
    for loaded in (load_checkpoint(pickled, trust_pickle=True), load_checkpoint(traced)):
        assert loaded.dtype == "float32"
        with torch.no_grad():
            assert torch.allclose(loaded.module(X), _model()(X), atol=1e-6)


def _program() -> torch.export.ExportedProgram:
    return torch.export.export(_model(), (X[:1],))


def test_pt2_exported_on_cuda_loads_on_cpu(tmp_path):
    path = _pt2_on_cuda(_program(), tmp_path / "cuda.pt2")
    with pytest.raises(Exception, match="CUDA"):  # what torch alone says about this file here
        torch.export.load(str(path))
    loaded = load_checkpoint(path)
    assert loaded.kind == "exported_program" and loaded.dtype == "float32"
    assert any("saved on cuda" in n for n in loaded.notes)
    with torch.no_grad():
        assert torch.allclose(loaded.module(X[:1]), _model()(X[:1]), atol=1e-6)


def test_pt2_that_cannot_move_names_cuda_and_versions(tmp_path):
    path = _pt2_on_cuda(_program(), tmp_path / "cuda.pt2", torch_version="2.11.0+cu130")
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():  # one weight file cut short: the program cannot be rebuilt anywhere
            data = src.read(info.filename)
            dst.writestr(info, data[:8] if info.filename.endswith("weights/weight_0") else data)
    with pytest.raises(InputError) as err:
        load_checkpoint(broken)
    line = err.value.one_line()
    assert "exported on CUDA: re-export on CPU with torch.export.export(model.cpu(), ...)" in line
    assert "2.11.0+cu130" in line and torch.__version__ in line and "\n" not in line


def test_pt2_from_another_torch_version_is_tried_first(tmp_path):
    buf = io.BytesIO()
    torch.export.save(_program(), buf)
    other, bad = tmp_path / "other.pt2", tmp_path / "bad.pt2"
    for path, schema in ((other, None), (bad, {"major": 999, "minor": 0})):
        src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))  # writestr() rewrites the ZipInfo it is given
        with zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if "/models/" in info.filename and info.filename.endswith(".json"):
                    doc = json.loads(data)
                    doc["torch_version"] = "2.9.1+cu128"
                    doc["schema_version"] = schema or doc["schema_version"]
                    data = json.dumps(doc).encode()
                dst.writestr(info, data)
    assert load_checkpoint(other).kind == "exported_program", "an older writer is no reason to refuse"
    with pytest.raises(InputError) as err:
        load_checkpoint(bad)
    line = err.value.one_line()
    assert "saved by torch 2.9.1+cu128, loading with torch " + torch.__version__ in line
    assert "re-export it with torch" in line and "CUDA" not in line


@pytest.mark.slow
def test_forms_convert_with_the_plain_state_dicts_accuracy(tmp_path):
    """Plain, torch.compile-prefixed, EMA-container and cuda-saved .pt2 forms through the real CLI,
    int8 on host: the same float check and the same int8 accuracy as the plain state_dict."""
    np.savez(tmp_path / "calib.npz", x=image_data(24, (3, 16, 16)))
    forms = {"plain": _saved(_sd()), "compiled": FORMS["torch.compile"](),
             "ema": _saved({"model": _ema_sd(), "model_ema": _sd()})}
    reports = {}
    for name, blob in [*forms.items(), ("pt2", None)]:
        ckpt = tmp_path / f"{name}.pt"
        if blob is None:
            ckpt = _pt2_on_cuda(_program(), tmp_path / "cuda.pt2")
        else:
            ckpt.write_bytes(blob)
        extra = [] if name == "pt2" else ["--model-class", CLASS]
        out = tmp_path / f"out_{name}"
        code = main(["convert", str(ckpt), "--profile", "host", "--quant", "int8", "--calib", str(tmp_path / "calib.npz"),
                     "--input-shape", "1x3x16x16", "--runs", "2", "--exporter", "onnx2tf", "-o", str(out), "--quiet",
                     *extra])
        assert code in (0, 1)
        reports[name] = json.loads((out / "report.json").read_text())
    plain = reports["plain"]
    for name in ("compiled", "ema"):
        assert reports[name]["accuracy"] == plain["accuracy"], name
        assert reports[name]["artifact"]["sha256"] == plain["artifact"]["sha256"], "the same weights, the same model"
    assert any("prefix '_orig_mod.'" in n for n in reports["compiled"]["model"]["notes"])
    assert any("EMA" in n for n in reports["ema"]["model"]["notes"])
    pt2 = reports["pt2"]
    assert pt2["model"]["dtype"] == "float32" and any("saved on cuda" in n for n in pt2["model"]["notes"])
    assert pt2["float_conversion"]["matches"] and plain["float_conversion"]["matches"]
    assert abs(pt2["accuracy"]["top1_agreement"] - plain["accuracy"]["top1_agreement"]) <= 0.05
