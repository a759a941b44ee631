"""The litert-torch backend (edgeport.export.litert_torch): real conversions of tiny seeded models.

What is checked: float outputs equal torch's, int8 keeps the top-1 answer, rank-4 inputs become NHWC
with the permutation recorded, torch.export failures are one-line ConversionErrors, and a mode whose
build kills the worker is an error for that mode only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeport.errors import ConversionError
from edgeport.export.litert_torch import convert_litert_torch, export_failure
from edgeport.export.litert_torch_worker import CRASH_HOOK_ENV, match_inputs
from edgeport.types import TensorSpec
from edgeport.zoo.sequence_models import GruClassifier

pytest.importorskip("litert_torch")


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


def _seeded(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    return model.eval()


def _run(path, name: str, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return next(iter(runner(**{name: x}).values()))


def _jobs(*modes: str) -> list[dict]:
    return [{"key": m, "mode": m, "io_dtype": "float32"} for m in modes]


@pytest.mark.slow
def test_gru_fp32_matches_torch_and_int8_keeps_top1(tmp_path):
    model = _seeded(GruClassifier())
    rng = np.random.default_rng(1)
    calib = {"seq": rng.standard_normal((64, 16, 8)).astype(np.float32)}
    res = convert_litert_torch(model, [TensorSpec("seq", (1, 16, 8))], tmp_path, _jobs("fp32", "int8"), calib)
    assert res.errors == {} and set(res.files) == {"fp32", "int8"}
    (name, entry), = res.input_map.items()
    assert entry == {"source": "seq", "perm": None, "shape": [1, 16, 8], "dtype": "float32"}  # rank 3 kept
    data = np.random.default_rng(2).standard_normal((64, 1, 16, 8)).astype(np.float32)
    with torch.no_grad():
        ref = np.stack([model(torch.from_numpy(x)).numpy() for x in data])
    f32 = np.stack([_run(res.files["fp32"], name, x) for x in data])
    cos = np.sum(f32 * ref, axis=-1) / (np.linalg.norm(f32, axis=-1) * np.linalg.norm(ref, axis=-1))
    assert cos.min() > 0.999
    q = np.stack([_run(res.files["int8"], name, x) for x in data])
    assert np.mean(q.argmax(-1) == ref.argmax(-1)) >= 0.95


@pytest.mark.slow
def test_nchw_input_becomes_nhwc(tmp_path):
    model = _seeded(TinyCNN())
    res = convert_litert_torch(model, [TensorSpec("image", (1, 3, 12, 10))], tmp_path, _jobs("fp32"), None)
    (name, entry), = res.input_map.items()
    assert entry["perm"] == [0, 2, 3, 1] and entry["shape"] == [1, 12, 10, 3] and entry["source"] == "image"
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 10)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = _run(res.files["fp32"], name, x.transpose(entry["perm"]).copy())
    np.testing.assert_allclose(out, ref, atol=1e-4)  # outputs keep the torch layout
    assert res.signature == "serving_default"


def test_export_failure_is_one_line_conversion_error(tmp_path):
    with pytest.raises(ConversionError) as err:
        convert_litert_torch(DataDependent(), [TensorSpec("x", (1, 4))], tmp_path, _jobs("fp32"), None)
    text = err.value.one_line()
    assert "\n" not in text and text.startswith("torch.export could not export the model")
    assert "data-dependent" in text and "if x.sum() > 0" in text


def test_export_failure_line_without_user_frame():
    assert export_failure(RuntimeError("first line\nsecond")) == "first line"


def test_jobs_this_backend_cannot_build_are_refused_with_the_reason():
    from edgeport.export.litert_torch import _unsupported

    jobs = [{"key": "a", "mode": "mixed", "io_dtype": "float32"}, {"key": "b", "mode": "int8", "io_dtype": "uint8"},
            {"key": "c", "mode": "int8", "io_dtype": "float32"}, {"key": "d", "mode": "fp32", "io_dtype": "float32"}]
    assert "not available" in _unsupported(jobs[0], None)
    assert "uint8" in _unsupported(jobs[1], {"x": np.zeros((1, 4))})
    assert "calibration" in _unsupported(jobs[2], None)
    assert _unsupported(jobs[3], None) is None
    assert _unsupported({"key": "e", "mode": "int8", "io_dtype": "int8"}, {"x": np.zeros((1, 4))}) is None


def test_signature_inputs_are_matched_by_name_not_order():
    inputs = [{"source": f"in{i}", "tflite_shape": [1, i + 1]} for i in range(11)]
    sig = sorted(({"name": f"args_{i}", "shape": [1, i + 1]} for i in range(11)), key=lambda s: s["name"])
    assert match_inputs(inputs, sig) == [f"args_{i}" for i in range(11)]
    with pytest.raises(ValueError, match="cannot match input 'in0'"):
        match_inputs(inputs[:1], [{"name": "args_0", "shape": [1, 7]}])


@pytest.mark.slow
def test_crashing_mode_is_an_error_for_that_mode_only(tmp_path, monkeypatch):
    monkeypatch.setenv(CRASH_HOOK_ENV, "int8")
    model = _seeded(TinyCNN())
    calib = {"image": np.random.default_rng(0).standard_normal((8, 3, 12, 10)).astype(np.float32)}
    res = convert_litert_torch(model, [TensorSpec("image", (1, 3, 12, 10))], tmp_path,
                               _jobs("fp32", "int8", "dynamic", "int16x8"), calib)
    assert set(res.files) == {"fp32", "dynamic", "int16x8"}
    assert set(res.errors) == {"int8"} and "SIGABRT" in res.errors["int8"]
    assert all(p.stat().st_size > 0 for p in res.files.values())


@pytest.mark.slow
def test_int8_io_is_integer_graph_io(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = _seeded(TinyCNN())
    calib = {"image": np.random.default_rng(0).standard_normal((8, 3, 12, 10)).astype(np.float32)}
    jobs = [{"key": "q", "mode": "int8", "io_dtype": "int8"}, {"key": "f", "mode": "int8", "io_dtype": "float32"}]
    res = convert_litert_torch(model, [TensorSpec("image", (1, 3, 12, 10))], tmp_path, jobs, calib)
    assert res.errors == {}
    dtypes = {}
    for key, path in res.files.items():
        runner = Interpreter(model_path=str(path)).get_signature_runner()
        dtypes[key] = {d["dtype"] for d in [*runner.get_input_details().values(), *runner.get_output_details().values()]}
    assert dtypes == {"q": {np.int8}, "f": {np.float32}}
