"""--const NAME=VALUE: plain forward() arguments bound for export, for every torch checkpoint kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from edgeport.cli import main
from edgeport.errors import InputError
from edgeport.export.checkpoint import load_checkpoint
from edgeport.export.constants import bind_constants, forward_params, parse_const_args

from fixture_models import TinyVad, seeded
from stderr_lines import error_lines


@pytest.fixture(scope="module")
def vad(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("vad")
    model = seeded(TinyVad())
    torch.jit.save(torch.jit.script(model), d / "vad.ts")
    torch.save(model.state_dict(), d / "vad_sd.pt")
    torch.export.save(torch.export.export(model, (torch.randn(1, 64), 8000)), d / "vad.pt2")
    return {"dir": d, "model": model}


def test_values_parse_as_literals():
    assert parse_const_args(["sr=16000", "gain=0.5", "on=true", "off=False", "crop=[2, 30]", "name=abc"]) == {
        "sr": 16000, "gain": 0.5, "on": True, "off": False, "crop": [2, 30], "name": "abc"}
    for bad in (["sr"], ["=3"], ["sr=1", "sr=2"]):
        with pytest.raises(InputError):
            parse_const_args(bad)


@pytest.mark.parametrize("name", ["vad.ts", "vad_sd.pt"])
def test_argument_types_are_read_from_the_checkpoint(vad, name):
    loaded = load_checkpoint(vad["dir"] / name, "fixture_models:TinyVad" if name.endswith("_sd.pt") else None)
    params = {p.name: p for p in forward_params(loaded)}
    assert [n for n, p in params.items() if p.tensor] == ["x"]
    assert (params["sr"].type, params["sr"].has_default) == ("int", False)
    assert params["gain"].type == "float" and params["crop"].type == "List[int]"


@pytest.mark.parametrize("name", ["vad.ts", "vad_sd.pt"])
def test_bound_module_computes_what_the_model_computes(vad, name):
    loaded = load_checkpoint(vad["dir"] / name, "fixture_models:TinyVad" if name.endswith("_sd.pt") else None)
    bound, bindings = bind_constants(loaded, parse_const_args(["sr=8000", "gain=2", "crop=[4, 60]"]), ["x"])
    assert bound.input_names == ("x",)
    assert {b["name"]: (b["value"], b["source"]) for b in bindings} == {
        "sr": (8000, "--const"), "gain": (2.0, "--const"), "crop": ([4, 60], "--const")}
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(bound.module(x), vad["model"](x, 8000, 2.0, [4, 60]))
        assert not torch.allclose(bound.module(x), vad["model"](x, 16000, 2.0, [4, 60]))


def test_exported_program_keeps_its_baked_in_value(vad):
    loaded = load_checkpoint(vad["dir"] / "vad.pt2")
    bound, bindings = bind_constants(loaded, {}, [])
    assert bindings == [{"name": "sr", "type": "int", "value": 8000, "source": "exported"}]
    assert [s.name for s in bound.example_inputs] == ["x"]
    _, same = bind_constants(loaded, {"sr": 8000}, [])
    assert same[0]["source"] == "--const"
    with pytest.raises(InputError, match="fixed to 8000 when this torch.export program was made"):
        bind_constants(loaded, {"sr": 16000}, [])


@pytest.mark.parametrize("extra,expected", [
    ([], r"^edgeport: error: forward\(\) argument 'sr' \(int\) is not a tensor and has no value — bind it with --const sr=VALUE$"),
    (["--input-shape", "sr=1"], r"'sr' is a plain int argument, not a tensor.*--const sr=VALUE"),
    (["--const", "sr=16k"], r"--const sr='16k' does not fit its type int"),
    (["--const", "sr=16000", "--const", "crop=[1,2.5]"], r"--const crop=\[1, 2.5\] does not fit its type List\[int\]"),
    (["--const", "sr=16000", "--const", "rate=3"], r"unknown argument 'rate' — forward\(\) takes: x: Tensor, sr: int"),
    (["--const", "x=3"], r"'x' is a tensor input"),
])
def test_unbound_or_wrong_values_are_one_line_exit_2(vad, tmp_path, capsys, extra, expected):
    out = tmp_path / "out"
    code = main(["convert", str(vad["dir"] / "vad.ts"), "--profile", "host", "--quant", "fp32",
                 "--input-shape", "x=1x64", *extra, "--output", str(out)])
    err = error_lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1, err
    assert re.search(expected, err[0]), err[0]
    assert not out.exists()


def test_const_on_onnx_must_name_a_graph_input(tmp_path, capsys):
    """--const on an ONNX file binds a graph input (tests/test_streaming_const.py); any other name is
    one line listing the inputs."""
    model = torch.nn.Linear(4, 2)
    torch.onnx.export(model, (torch.randn(1, 4),), tmp_path / "m.onnx", dynamo=False, input_names=["x"])
    assert main(["convert", str(tmp_path / "m.onnx"), "--profile", "host", "--quant", "fp32", "--const", "sr=1",
                 "--output", str(tmp_path / "out")]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and re.search(r"unknown input 'sr' .*its inputs are: x: float32\[1x4\]$", err[0]), err


@pytest.mark.slow
@pytest.mark.parametrize("name,extra", [
    ("vad.ts", ["--input-shape", "x=1x64", "--const", "sr=8000", "--const", "crop=[4,60]"]),
    ("vad.pt2", []),
    ("vad_sd.pt", ["--model-class", "fixture_models:TinyVad", "--input-shape", "1x64", "--const", "sr=8000",
                   "--const", "crop=[4,60]"]),
])
def test_convert_with_bound_constants(vad, tmp_path, capsys, name, extra):
    code = main(["convert", str(vad["dir"] / name), "--profile", "host", "--quant", "fp32", *extra,
                 "--output", str(tmp_path), "--runs", "3", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert code == 0, rep["verdict"]
    consts = {c["name"]: c for c in rep["model"]["constants"]}
    assert consts["sr"]["value"] == 8000 and consts["sr"]["type"] == "int"
    assert consts["sr"]["source"] == ("exported" if name.endswith(".pt2") else "--const")
    if not name.endswith(".pt2"):
        assert consts["crop"]["value"] == [4, 60] and consts["gain"] == {"name": "gain", "type": "float", "value": 1.0,
                                                                          "source": "default"}
    assert [i["name"] for i in rep["model"]["inputs"]] == ["x"]
    assert rep["accuracy"]["cosine_mean"] > 0.999


@pytest.mark.parametrize("script", [False, True])
def test_keyword_only_arguments_are_bound_by_name(tmp_path, script):
    from fixture_models import KeywordVad

    model = seeded(KeywordVad())
    if script:
        torch.jit.save(torch.jit.script(model), tmp_path / "kw.ts")
        loaded = load_checkpoint(tmp_path / "kw.ts")
    else:
        torch.save(model.state_dict(), tmp_path / "kw.pt")
        loaded = load_checkpoint(tmp_path / "kw.pt", "fixture_models:KeywordVad")
    with pytest.raises(InputError, match=r"'sr' \(int\) is not a tensor and has no value"):
        bind_constants(loaded, {}, [])
    bound, bindings = bind_constants(loaded, {"sr": 8000}, [])
    assert bound.input_names == ("x",) and bindings[0]["value"] == 8000
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(bound.module(x), model(x, sr=8000))
