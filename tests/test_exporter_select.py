"""`--exporter auto` picks by evidence: fake backends, no conversion, so each rule is a fast test."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
    assert "SIGSEGV" in choice.reason and "litert-torch kept: its float32 model matches the reference" in choice.reason
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
    assert "onnx2tf kept: litert-torch did no better and it was tried first, although its float32 model disagrees" in choice.reason


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


# --- arbitration on the artifact (export/arbitrate.py): fakes for the validated int8 file ---------------

def _art(key: str = "int8", size: int = 40, fp32: int = 100, ran: bool = True, cosine: float | None = 0.999,
         failed: tuple[str, ...] = (), error: str | None = None, mismatch: str | None = None) -> select.ArtifactCheck:
    return select.ArtifactCheck(key=key, size_bytes=size, fp32_size_bytes=fp32, ran=ran, runtime_error=error,
                                mismatch=mismatch, cosine=cosine, top1_agreement=cosine, snr_db=30.0, drop_pp=None,
                                failed=failed)


CRASH = _art(ran=False, cosine=None, error="the TFLite runtime crashed (SIGABRT) while running the model on validation data",
             failed=("runs_on_validation_data: no (the TFLite runtime crashed (SIGABRT) ...)",))
MISSES = _art(cosine=0.44, failed=("accuracy_drop_pp: 57.5 vs budget 1",))


def _validate(by_backend: dict[str, select.ArtifactCheck], calls: list[str] | None = None):
    def validate(conv: Conversion) -> select.ArtifactCheck:
        if calls is not None:
            calls.append(conv.backend)
        return by_backend[conv.backend]
    return validate


def _both_match():
    return _check({"onnx2tf", "litert-torch"})


def test_a_first_artifact_that_works_settles_it_without_a_second_conversion(fakes, tmp_path: Path) -> None:
    calls: list[str] = []
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": _art(), "litert-torch": _art()}, calls))
    assert choice.conversion.backend == "onnx2tf" and calls == ["onnx2tf"] and not fakes["litert-torch"].calls
    assert choice.reason == "onnx2tf converted, its float32 model matches the reference and its int8 model meets the accuracy budget"
    assert choice.validated is choice.attempts[0].artifact and choice.answer_check() is None


def test_an_int8_model_that_crashes_at_run_time_makes_auto_try_litert_torch(fakes, tmp_path: Path) -> None:
    notes: list[str] = []
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(), note=notes.append,
                           validate=_validate({"onnx2tf": CRASH, "litert-torch": _art(cosine=0.998)}))
    assert choice.conversion.backend == "litert-torch"
    first, second = (a.to_dict() for a in choice.attempts)
    assert first["converted"] and first["float_matches"] and not first["kept"]
    assert first["artifact"]["ran"] is False and "SIGABRT" in first["artifact"]["runtime_error"]
    assert "SIGABRT" in first["error"] and "fails at run time" in first["why"]
    assert second["kept"] and second["artifact"] == {
        "mode": "int8", "size_bytes": 40, "fp32_size_bytes": 100, "size_vs_fp32": 0.4, "ran": True, "runtime_error": None,
        "cosine_mean": 0.998, "top1_agreement": 0.998, "snr_db": 30.0, "drop_pp": None, "meets_budget": True,
        "failed_checks": []}
    assert "onnx2tf: its int8 model fails at run time" in choice.reason and "litert-torch kept" in choice.reason
    assert any("trying litert-torch" in n for n in notes)
    assert choice.answer_check() == (True, "")  # a fallback was judged, and it is an answer


def test_an_int8_model_that_misses_the_budget_loses_to_one_that_meets_it(fakes, tmp_path: Path) -> None:
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": MISSES, "litert-torch": _art(cosine=0.9993)}))
    assert choice.conversion.backend == "litert-torch"
    assert [a.kept for a in choice.attempts] == [False, True]
    assert "accuracy_drop_pp: 57.5 vs budget 1" in choice.attempts[0].why


def test_when_both_miss_the_budget_the_higher_worst_output_cosine_is_kept(fakes, tmp_path: Path) -> None:
    first = _art(cosine=0.95, failed=("snr_db: 13 vs budget 15",))
    for cosine, kept in ((0.93, "onnx2tf"), (0.97, "litert-torch")):
        second = _art(cosine=cosine, failed=("snr_db: 12 vs budget 15",))
        choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                               validate=_validate({"onnx2tf": first, "litert-torch": second}))
        assert choice.conversion.backend == kept
    assert "higher worst-output cosine (0.97 vs 0.95 for onnx2tf), although its int8 model misses the budget" in choice.reason


def test_cosines_equal_below_the_step_are_a_tie_that_the_first_exporter_keeps(fakes, tmp_path: Path) -> None:
    """Two int8 files of one CNN differed by 1e-11 in cosine: noise, not evidence for the fallback."""
    first = _art(cosine=0.99991977264, failed=("top1_agreement: 0.9722 vs budget 0.98",))
    second = _art(cosine=0.99991977266, failed=("top1_agreement: 0.9722 vs budget 0.98",))
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": first, "litert-torch": second}))
    assert choice.conversion.backend == "onnx2tf"
    assert "litert-torch did no better and it was tried first" in choice.reason or "tried first" in choice.reason


def test_ties_are_a_margin_not_a_rounding_and_agreement_decides_between_equal_cosines(fakes, tmp_path: Path) -> None:
    from dataclasses import replace

    miss = ("top1_agreement: 0.9 vs budget 0.98",)
    # either side of a 1e-4 rounding edge, 1e-6 apart: still a tie, which the exporter tried first keeps
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": _art(cosine=0.99985, failed=miss),
                                               "litert-torch": _art(cosine=0.999851, failed=miss)}))
    assert choice.conversion.backend == "onnx2tf" and "litert-torch did no better and it was tried first" in choice.reason
    first = replace(_art(cosine=0.95, failed=miss), top1_agreement=0.90)
    second = replace(_art(cosine=0.95004, failed=miss), top1_agreement=0.95)
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": first, "litert-torch": second}))
    assert choice.conversion.backend == "litert-torch"
    assert "higher top-1 agreement (0.95 vs 0.9 for onnx2tf)" in choice.reason


def test_a_fallback_larger_than_its_own_fp32_is_not_an_answer(fakes, tmp_path: Path) -> None:
    """The fallback meets the budget, but its int8 file outweighs its float32 one: quantization bought nothing."""
    bloated = _art(size=157, fp32=100, cosine=0.999)
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": MISSES, "litert-torch": bloated}))
    assert choice.conversion.backend == "onnx2tf"  # failing, and the verdict says so through its own checks
    second = choice.attempts[1]
    assert not second.kept and "larger than its float32 model (157 bytes, 157% of 100)" in second.why
    assert choice.answer_check() is None


def test_a_fallback_far_below_the_first_exporters_float_agreement_is_not_an_answer(fakes, tmp_path: Path) -> None:
    """The issue's case: the fallback returned cosine 0.50; onnx2tf's float32 model agreed at 1.0."""
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": CRASH, "litert-torch": _art(cosine=0.5)}))
    assert choice.conversion.backend == "litert-torch"  # it runs; the crash does not
    assert "cosine 0.5 is far below the float32 agreement 1 of onnx2tf" in choice.attempts[1].objection
    passed, detail = choice.answer_check()
    assert not passed and detail.startswith("litert-torch's int8 model's worst-output cosine 0.5 is far below")
    assert "onnx2tf: its int8 model fails at run time" in detail


def test_a_fallback_that_is_no_answer_is_kept_when_nothing_else_exists_and_fails_the_verdict(fakes, tmp_path: Path) -> None:
    fakes["onnx2tf"].fails = "the TFLite converter crashed (SIGSEGV) while converting to int8"
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _check({"litert-torch"}),
                           validate=_validate({"litert-torch": _art(size=135, fp32=100)}))
    assert choice.conversion.backend == "litert-torch"
    passed, detail = choice.answer_check()
    assert not passed and "litert-torch's int8 model is larger than its float32 model" in detail and "SIGSEGV" in detail
    assert choice.attempts[1].why.startswith("kept: the only exporter that gave a model, although it is no answer")


def test_an_explicit_exporter_is_not_second_guessed(fakes, tmp_path: Path) -> None:
    choice = select.export(_req(tmp_path), "onnx2tf", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": CRASH}))
    assert choice.conversion.backend == "onnx2tf" and choice.reason == "--exporter onnx2tf"
    assert not fakes["litert-torch"].calls and choice.answer_check() is None


def test_a_float_model_that_does_not_fit_the_reference_rejects_the_exporter(fakes, tmp_path: Path) -> None:
    mismatch = "output shape (24, 256) does not match reference (8, 256)"

    def check(conv: Conversion) -> select.FloatCheck:
        if conv.backend == "onnx2tf":
            return select.FloatCheck(False, {"matches": False, "cosine_min": None, "error": mismatch}, None, mismatch)
        return select.FloatCheck(True, {"matches": True, "cosine_min": 1.0}, None)

    choice = select.export(_req(tmp_path), "auto", "state_dict", "fp32", check)
    assert choice.conversion.backend == "litert-torch"
    first = choice.attempts[0].to_dict()
    assert first["converted"] and first["float_matches"] is False and first["error"] == mismatch
    assert first["why"] == f"not kept: rejected, {mismatch}" and "onnx2tf rejected: output shape" in choice.reason
    with pytest.raises(ConversionError, match=r"onnx2tf's float32 TFLite model does not fit the reference: output shape "
                                              r"\(24, 256\) does not match reference \(8, 256\)"):
        select.export(_req(tmp_path), "onnx2tf", "state_dict", "fp32", check)


def test_an_artifact_that_does_not_fit_the_reference_rejects_the_exporter(fakes, tmp_path: Path) -> None:
    wrong = _art(ran=False, cosine=None, mismatch="the TFLite model has 3 outputs but the reference has 1")
    choice = select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                           validate=_validate({"onnx2tf": wrong, "litert-torch": _art()}))
    assert choice.conversion.backend == "litert-torch" and "3 outputs" in choice.attempts[0].why
    with pytest.raises(ConversionError, match="onnx2tf's int8 TFLite model does not fit the reference: the TFLite model "
                                              "has 3 outputs .*also tried litert-torch: litert-torch's int8"):
        select.export(_req(tmp_path), "auto", "state_dict", "int8", _both_match(),
                      validate=_validate({"onnx2tf": wrong, "litert-torch": wrong}))


# --- outputs that do not fit the reference, through the real pipeline: tiny real .tflite files ----------

def _tflite(path: Path, rows: int = 1, outputs: int = 1) -> Path:
    """y = x + x for x of shape (1, 4), written with the TFLite schema (no conversion). rows > 1 adds a
    zero (rows, 4) constant instead, so every sample's output has `rows` rows (onnx2tf once returned
    each LSTM layer's h_n: 3x the batch); outputs > 1 returns the sum that many times."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str, shape: list[int], buffer: int) -> s.TensorT:
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = shape, s.TensorType.FLOAT32, buffer, name
        return t

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 1
    zeros = s.BufferT()
    zeros.data = np.zeros((rows, 4), np.float32).view(np.uint8).ravel()
    tensors, buffers = [tensor("x", [1, 4], 1)], [s.BufferT(), s.BufferT()]
    other = 0
    if rows > 1:
        tensors.append(tensor("zeros", [rows, 4], 2))
        buffers.append(zeros)
        other = 1
    ops, outs = [], []
    for k in range(outputs):
        tensors.append(tensor(f"y{k}", [rows, 4], 0))
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [0, other], [len(tensors) - 1]
        op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
        ops.append(op)
        outs.append(len(tensors) - 1)
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [0], outs, ops, "main"
    sig = s.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs = [s.TensorMapT()]
    sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", 0
    sig.outputs = []
    for k, index in enumerate(outs):
        entry = s.TensorMapT()
        entry.name, entry.tensorIndex = f"output_{k}", index
        sig.outputs.append(entry)
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], buffers
    model.signatureDefs = [sig]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


@dataclass
class TfliteBackend:
    """Writes y = x + x for every job; `wrong` jobs get 3x the rows, or `outputs` outputs."""

    name: str
    wrong: tuple[str, ...] = ()
    outputs: int = 1
    refuse: str | None = None

    def refuses(self, kind: str, mode: str) -> str | None:
        return self.refuse

    def convert(self, req: ExportRequest) -> Conversion:
        req.work.mkdir(parents=True, exist_ok=True)
        files = {job.key: _tflite(req.work / f"{job.key}.tflite", 3 if job.key in self.wrong else 1,
                                  self.outputs if job.key in self.wrong else 1) for job in req.jobs}
        return Conversion(self.name, files, {"x": {"source": "x", "perm": None, "shape": [1, 4]}})


@pytest.fixture
def doubler(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    import edgeport.export.onnx2tf_backend  # noqa: F401 - registers itself now, not into the fake registry later

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


def _convert(monkeypatch, capsys, model: Path, out: Path, quant: str, *backends: TfliteBackend) -> tuple[int, dict, list[str]]:
    from edgeport.cli import main

    registry = {b.name: b for b in backends}
    monkeypatch.setattr(backend, "BACKENDS", registry)
    monkeypatch.setattr(select, "BACKENDS", registry)
    code = main(["convert", str(model), "--profile", "host", "--quant", quant, "--output", str(out), "--runs", "2", "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), [ln for ln in captured.err.splitlines() if ln.strip()]


NOT_ONNX = "LiteRT Torch converts PyTorch models, not ONNX files"


def test_run_tflite_reports_outputs_that_do_not_fit_the_reference(tmp_path: Path) -> None:
    from edgeport.validate.run import run_tflite

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    imap = {"x": {"source": "x", "perm": None, "shape": [1, 4]}}
    run = run_tflite(_tflite(tmp_path / "m.tflite", rows=3), {"x": x}, imap, [2 * x], threads=1, runs=0)
    assert run.outputs is None and run.mismatch == run.error == "output shape (6, 4) does not match reference (2, 4)"
    run = run_tflite(_tflite(tmp_path / "two.tflite", outputs=2), {"x": x}, imap, [2 * x], threads=1, runs=0)
    assert run.mismatch == "the TFLite model has 2 outputs but the reference has 1"
    run = run_tflite(_tflite(tmp_path / "ok.tflite"), {"x": x}, imap, [2 * x], threads=1, runs=0)
    assert run.mismatch is None and np.array_equal(run.outputs[0], 2 * x)


def test_a_float_model_with_the_wrong_output_shape_makes_auto_use_the_next_exporter(doubler, tmp_path, monkeypatch, capsys):
    code, rep, _ = _convert(monkeypatch, capsys, doubler, tmp_path / "o", "fp32",
                            TfliteBackend("onnx2tf", wrong=("fp32",)), TfliteBackend("litert-torch"))
    first, second = rep["export"]["attempts"]
    assert first["converted"] and first["float_matches"] is False and not first["kept"]
    assert first["error"] == "output shape (24, 4) does not match reference (8, 4)"  # the float check's 8 samples
    assert second["kept"] and rep["export"]["backend"] == "litert-torch"
    assert "onnx2tf rejected: output shape (24, 4)" in rep["export"]["reason"]
    assert rep["float_conversion"]["matches"] is True and code == 0, rep["verdict"]


@pytest.mark.parametrize("wrong, outputs, quant, said", [
    (("fp32",), 1, "fp32", "onnx2tf's float32 TFLite model does not fit the reference: output shape (24, 4) does not match "
                           "reference (8, 4)"),
    (("fp32",), 2, "fp32", "onnx2tf's float32 TFLite model does not fit the reference: the TFLite model has 2 outputs but "
                           "the reference has 1"),
    (("fp16",), 1, "fp16", "onnx2tf's fp16 TFLite model does not fit the reference: output shape (96, 4) does not match "
                           "reference (32, 4)"),
])
def test_outputs_that_do_not_fit_with_no_exporter_left_are_one_line_exit_3(doubler, tmp_path, monkeypatch, capsys,
                                                                           wrong, outputs, quant, said):
    code, rep, err = _convert(monkeypatch, capsys, doubler, tmp_path / "o", quant,
                              TfliteBackend("onnx2tf", wrong=wrong, outputs=outputs), TfliteBackend("litert-torch", refuse=NOT_ONNX))
    assert code == 3 and rep["exit_code"] == 3
    assert err[-1].startswith(f"edgeport: error: {said} — the converter changed the model's outputs"), err
    assert not any("Traceback" in ln or "internal error" in ln for ln in err)
    assert not (tmp_path / "o").exists()


def test_an_artifact_with_the_wrong_output_shape_makes_auto_use_the_next_exporter(doubler, tmp_path, monkeypatch, capsys):
    code, rep, _ = _convert(monkeypatch, capsys, doubler, tmp_path / "o", "fp16",
                            TfliteBackend("onnx2tf", wrong=("fp16",)), TfliteBackend("litert-torch"))
    first = rep["export"]["attempts"][0]
    assert first["float_matches"] is True and first["error"] == "output shape (96, 4) does not match reference (32, 4)"
    assert first["artifact"]["ran"] is False and rep["export"]["backend"] == "litert-torch"
    assert code == 0, rep["verdict"]
