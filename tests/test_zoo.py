"""Fast checks of the embedded default model: architecture, shipped weights, and TorchScript file.

The accuracy check loads the npz and applies the manifest's preprocessing itself (not the zoo's
`preprocess`), so a drift between the documented input contract and the code is caught here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeport.zoo.digits_net import DigitsNet, InvertedResidual, example_input, preprocess

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "edgeport" / "zoo"
DIGITS = REPO / "calibration_data" / "digits" / "digits.npz"


@pytest.fixture(scope="module")
def trained() -> DigitsNet:
    model = DigitsNet()
    state = torch.load(ZOO / "digits_net.pt", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def val_head() -> tuple[torch.Tensor, torch.Tensor]:
    data = np.load(DIGITS)
    raw = data["x_val"][:200]
    x = (raw.astype(np.float32) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(x), torch.from_numpy(data["y_val"][:200])


@pytest.mark.parametrize("kwargs", [{}, {"width": 0.5}, {"num_classes": 7, "width": 1.0}])
def test_builds_and_output_shape(kwargs: dict[str, float]) -> None:
    torch.manual_seed(0)
    model = DigitsNet(**kwargs).eval()
    with torch.no_grad():
        out = model(torch.zeros(3, 1, 32, 32))
    assert out.shape == (3, int(kwargs.get("num_classes", 10)))


def test_width_scales_parameters() -> None:
    full = sum(p.numel() for p in DigitsNet().parameters())
    half = sum(p.numel() for p in DigitsNet(width=0.5).parameters())
    assert 50_000 <= full <= 200_000
    assert half < full


def test_init_is_deterministic_under_seed() -> None:
    torch.manual_seed(123)
    a = DigitsNet().state_dict()
    torch.manual_seed(123)
    b = DigitsNet().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mobile_building_blocks_present() -> None:
    model = DigitsNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depthwise = [c for c in convs if c.groups > 1 and c.groups == c.in_channels == c.out_channels]
    assert depthwise, "expected depthwise 3x3 convs"
    assert all(c.kernel_size == (3, 3) for c in depthwise)
    assert any(c.stride == (2, 2) for c in depthwise)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())
    v3 = DigitsNet(activation="v3")
    assert any(isinstance(m, nn.Hardswish) for m in v3.modules())
    assert any(isinstance(m, nn.ReLU6) for m in v3.modules())
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    assert isinstance(model.classifier, nn.Linear)


def test_residual_blocks_really_add_their_input() -> None:
    # Hooks on each residual block and its branch prove the skip is taken in forward(), not just
    # declared: block output must equal block input + branch output.
    torch.manual_seed(0)
    model = DigitsNet().eval()
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual) and m.use_residual]
    assert len(blocks) >= 3
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    branch_out: dict[int, torch.Tensor] = {}
    handles = []
    for i, block in enumerate(blocks):

        def on_branch(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor, i: int = i) -> None:
            branch_out[i] = out.detach().clone()

        def on_block(_m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, i: int = i) -> None:
            seen.append((inp[0].detach().clone(), branch_out[i], out.detach().clone()))

        handles.append(block.conv.register_forward_hook(on_branch))
        handles.append(block.register_forward_hook(on_block))
    with torch.no_grad():
        model(example_input())
    for handle in handles:
        handle.remove()
    assert len(seen) == len(blocks)
    for inp, branch, out in seen:
        assert torch.allclose(out, inp + branch, atol=1e-6)


def test_spatial_downsampling_reaches_4x4() -> None:
    model = DigitsNet().eval()
    with torch.no_grad():
        feats = model.features(example_input())
    assert feats.shape[-2:] == (4, 4)


def test_example_input_contract() -> None:
    x = example_input()
    assert x.shape == (1, 1, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.equal(x, example_input())


def test_preprocess_matches_manifest() -> None:
    raw = np.array([0, 128, 255], dtype=np.uint8).reshape(1, 1, 1, 3)
    expected = (raw.astype(np.float32) / 255.0 - 0.5) / 0.5
    np.testing.assert_allclose(preprocess(raw).numpy(), expected, atol=1e-6)


def test_shipped_weights_accuracy(trained: DigitsNet, val_head: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = val_head
    with torch.no_grad():
        acc = (trained(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.9


def test_torchscript_matches_eager(trained: DigitsNet, val_head: tuple[torch.Tensor, torch.Tensor]) -> None:
    scripted = torch.jit.load(str(ZOO / "digits_net.ts"), map_location="cpu").eval()
    x = torch.cat([example_input(), val_head[0][:16]])
    with torch.no_grad():
        diff = (scripted(x) - trained(x)).abs().max().item()
    assert diff < 1e-4


def test_onnx_export_is_clean(trained: DigitsNet, tmp_path: Path) -> None:
    # The pipeline exports with the TorchScript-based exporter at opset 17; BatchNorm must fold into
    # the convs and only ops every TFLite runtime has built-in kernels for may appear.
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "digits_net.onnx"
    x = example_input()
    torch.onnx.export(
        trained,
        (x,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
    )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= {"Conv", "HardSwish", "Clip", "Add", "GlobalAveragePool", "Flatten", "Gemm", "Constant"}
    assert {"Conv", "Add", "Clip"} <= ops  # Clip = ReLU6
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = trained(x).numpy()
    np.testing.assert_allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4)
