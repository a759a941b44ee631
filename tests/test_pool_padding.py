"""Padded / ceil-mode max-pool rewrite: the float result must be identical before and after."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeport.export.pool_padding import rewrite_padded_maxpools
from edgeport.export.torch_to_onnx import export_onnx
from edgeport.types import TensorSpec


class ConvActPool(nn.Module):
    def __init__(self, act: nn.Module, pool: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = act
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.conv(x)))


def _onnx(module: nn.Module, size: int, tmp_path) -> onnx.ModelProto:
    path = tmp_path / "m.onnx"
    export_onnx(module.eval(), [TensorSpec("x", (4, 3, size, size))], path)
    return onnx.shape_inference.infer_shapes(onnx.load(str(path)))


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _inputs(size: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, size, size)).astype(np.float32) * 3
    x[1] = -1e4 - np.abs(x[1])  # all activations far below zero: a wrong pad value would show
    return x


CASES = [
    # (activation, pool, input size, expected rewrite kind)
    (nn.ReLU(), nn.MaxPool2d(3, 2, 1), 18, "bounded"),  # ResNet stem on an even size
    (nn.ReLU(), nn.MaxPool2d(3, 2, 1), 17, "same"),  # ...on an odd size TFLite's SAME pads the same way
    (nn.ReLU6(), nn.MaxPool2d(3, 2, 1), 18, "bounded"),
    (nn.PReLU(4, 0.25), nn.MaxPool2d(3, 2, 1, ceil_mode=True), 18, "edge"),
    (nn.PReLU(4, 0.25), nn.MaxPool2d(3, 2, ceil_mode=True), 16, "same"),  # MTCNN: the ceil extra falls as SAME pads
    (nn.Identity(), nn.MaxPool2d(3, 2, 1), 18, "edge"),
    (nn.Identity(), nn.MaxPool2d(3, 1, 1, ceil_mode=True), 11, "same"),  # GoogLeNet pool branch
    (nn.Identity(), nn.MaxPool2d(2, 2, ceil_mode=True), 15, "same"),
    (nn.PReLU(4, 0.25), nn.MaxPool2d(5, 2, ceil_mode=True), 12, "edge"),
    (nn.Tanh(), nn.MaxPool2d(5, 3, 2, ceil_mode=True), 20, "edge"),
    (nn.Sigmoid(), nn.MaxPool2d(3, 2, 1, ceil_mode=True), 20, "bounded"),
]


@pytest.mark.parametrize("act,pool,size,kind", CASES, ids=[f"{type(c[0]).__name__}-{c[1]}-{c[2]}" for c in CASES])
def test_rewrite_is_float_identical(tmp_path, act, pool, size, kind):
    model = _onnx(ConvActPool(act, pool), size, tmp_path)
    before = copy.deepcopy(model)
    done = rewrite_padded_maxpools(model)
    assert [r.kind for r in done] == [kind]
    onnx.checker.check_model(model)
    x = _inputs(size)
    ref = ConvActPool(act, pool).eval()(torch.from_numpy(x)).detach().numpy()
    got, want = _run(model, x), _run(before, x)
    assert got.shape == want.shape == ref.shape
    assert np.array_equal(got, want), np.abs(got - want).max()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3)
    pools = [n for n in model.graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 1 and pools[0].name == done[0].node, "the pool keeps its name, so tracing still finds it"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in pools[0].attribute}
    assert not any(attrs.get("pads", [])) and not attrs.get("ceil_mode")
    if kind == "bounded":
        assert done[0].pad_value == 0.0
        assert [n.op_type for n in model.graph.node].count("Pad") == 1


@pytest.mark.parametrize("pool,size", [(nn.MaxPool2d(2, 2), 16), (nn.MaxPool2d(3, 2, ceil_mode=True), 17)])
def test_pools_without_padding_are_left_alone(tmp_path, pool, size):
    model = _onnx(ConvActPool(nn.ReLU(), pool), size, tmp_path)  # ceil_mode with no effect at this size
    before = model.SerializeToString()
    assert rewrite_padded_maxpools(model) == []
    assert model.SerializeToString() == before


def test_bound_follows_concat_and_pools(tmp_path):
    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)
            self.pool1, self.pool2 = nn.MaxPool2d(2, 2), nn.MaxPool2d(3, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.cat([torch.relu(self.a(x)), torch.clamp(self.b(x), min=-0.5)], 1)
            return self.pool2(self.pool1(y))

    model = _onnx(Branches(), 20, tmp_path)
    before = copy.deepcopy(model)
    done = rewrite_padded_maxpools(model)
    assert [(r.kind, r.pad_value) for r in done] == [("bounded", -0.5)]
    x = _inputs(20)
    assert np.array_equal(_run(model, x), _run(before, x))
