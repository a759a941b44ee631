"""`--exporter auto` picks by evidence: fake backends, no conversion, so each rule is a fast test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgeport.errors import ConversionError, InputError
from edgeport.export import backend, select
from edgeport.export.backend import Conversion, ExportRequest, Job


@dataclass
class FakeBackend:
    name: str
    fails: str | None = None
    refuse: str | None = None
    calls: list[Path] = field(default_factory=list)

    def refuses(self, kind: str, mode: str) -> str | None:
        return self.refuse

    def convert(self, req: ExportRequest) -> Conversion:
        self.calls.append(req.work)
        if self.fails:
            raise ConversionError(self.fails, hint="see the log")
        return Conversion(self.name, {"fp32": req.work / "fp32.tflite"}, {})


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch):
    registry = {"onnx2tf": FakeBackend("onnx2tf"), "litert-torch": FakeBackend("litert-torch")}
    monkeypatch.setattr(backend, "BACKENDS", registry)
    monkeypatch.setattr(select, "BACKENDS", registry)
    return registry


def _req(tmp_path: Path) -> ExportRequest:
    return ExportRequest(loaded=None, inputs=(), outputs=(), jobs=(Job("fp32", "fp32"),), calibration=None,  # type: ignore[arg-type]
                         work=tmp_path, opset=17)


def _check(matching: set[str]):
    return lambda conv: select.FloatCheck(conv.backend in matching, {"cosine_min": 1.0 if conv.backend in matching else 0.3}, None)


def test_auto_keeps_onnx2tf_when_its_float_model_matches(fakes, tmp_path: Path) -> None:
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _check({"onnx2tf", "litert-torch"}))
    assert choice.conversion.backend == "onnx2tf"
    assert [a.backend for a in choice.attempts] == ["onnx2tf"]
    assert not fakes["litert-torch"].calls


def test_auto_falls_back_when_onnx2tf_crashes_and_says_why(fakes, tmp_path: Path) -> None:
    fakes["onnx2tf"].fails = "the TFLite converter crashed (SIGSEGV) while converting to int8"
    notes: list[str] = []
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _check({"litert-torch"}), note=notes.append)
    assert choice.conversion.backend == "litert-torch"
    assert "SIGSEGV" in choice.reason and "litert-torch matches the reference" in choice.reason
    assert fakes["litert-torch"].calls == [tmp_path / "litert-torch"]  # its own work directory
    assert any("exporter onnx2tf failed" in n for n in notes)
    assert choice.to_dict()["attempts"][0]["converted"] is False


def test_auto_falls_back_when_the_float_model_disagrees(fakes, tmp_path: Path) -> None:
    choice = select.export(_req(tmp_path), "auto", "state_dict", "fp32", _check({"litert-torch"}))
    assert choice.conversion.backend == "litert-torch"
    assert [a.float_matches for a in choice.attempts] == [False, True]


def test_when_no_backend_matches_the_first_conversion_is_kept_and_fails_its_check(fakes, tmp_path: Path) -> None:
    choice = select.export(_req(tmp_path), "auto", "state_dict", "fp32", _check(set()))
    assert choice.conversion.backend == "onnx2tf" and not choice.float_check.matches
    assert "kept, but it disagrees too" in choice.reason


def test_onnx_files_have_only_the_onnx_path(fakes, tmp_path: Path) -> None:
    fakes["litert-torch"].refuse = "LiteRT Torch converts PyTorch models, not ONNX files"
    fakes["onnx2tf"].fails = "onnx2tf could not convert the model"
    with pytest.raises(ConversionError, match="onnx2tf could not convert") as err:
        select.export(_req(tmp_path), "auto", "onnx", "fp32", _check(set()))
    assert "also tried" not in str(err.value)
    assert not fakes["litert-torch"].calls


def test_both_failing_reports_both(fakes, tmp_path: Path) -> None:
    fakes["onnx2tf"].fails = "torch.onnx.export failed"
    fakes["litert-torch"].fails = "torch.export failed: data-dependent control flow"
    with pytest.raises(ConversionError, match=r"torch.onnx.export failed .*also tried litert-torch: torch.export failed"):
        select.export(_req(tmp_path), "auto", "state_dict", "fp32", _check(set()))


def test_an_explicit_exporter_that_cannot_take_the_model_is_an_input_error(fakes) -> None:
    fakes["litert-torch"].refuse = "LiteRT Torch converts PyTorch models, not ONNX files"
    with pytest.raises(InputError, match="--exporter litert-torch cannot convert this model: LiteRT Torch converts PyTorch"):
        select.candidates("litert-torch", "onnx", "fp32")
    with pytest.raises(InputError, match="--exporter 'tvm' is not one of auto, onnx2tf, litert-torch"):
        select.candidates("tvm", "state_dict", "fp32")


def test_a_missing_backend_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {"onnx2tf": FakeBackend("onnx2tf")}
    monkeypatch.setattr(select, "BACKENDS", registry)
    monkeypatch.setattr(select, "_load_backends", lambda: None)
    assert select.candidates("auto", "state_dict", "fp32") == ["onnx2tf"]
    with pytest.raises(InputError, match="not installed"):
        select.candidates("litert-torch", "state_dict", "fp32")
