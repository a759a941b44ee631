"""int8 models under XNNPACK: padded max-pools (issue 14, part 2), real conversions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.pipeline import convert
from edgeport.zoo.cnn_families import build

pytestmark = pytest.mark.slow


def _convert(tmp_path: Path, family: str, size: int, quant: str = "int8", **kw) -> dict:
    model = build(family, **({"width": 8} if family == "resnet18" else {}))
    ckpt = tmp_path / f"{family}.pt"
    torch.save(model.state_dict(), ckpt)
    data = tmp_path / f"{family}.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(-1, 1, (120, 3, size, size)).astype(np.float32))
    kwargs = {"model_kwargs": '{"width": 8}'} if family == "resnet18" else {}
    return convert(ckpt, "raspberry-pi-4", model_class=f"edgeport.zoo.cnn_families:{type(model).__name__}",
                   input_shapes=[f"1x3x{size}x{size}"], calib=str(data), quant=quant, runs=2,
                   output=tmp_path / f"out_{quant}_{kw.get('rewrite_pools', True)}", **kwargs, **kw).data


def _check(rep: dict, name: str) -> dict:
    return next(c for c in rep["verdict"]["checks"] if c["name"] == name)


def test_unrewritten_ceil_pool_is_refused_and_named(tmp_path):
    rep = _convert(tmp_path, "repro_ceil", 16, rewrite_pools=False)
    xnn = rep["xnnpack"]
    assert xnn["accepted"] is False and "XNNPACK" in xnn["error"]
    assert rep["accuracy"]["runtime"] == "builtin", "figures from builtin kernels are labelled so"
    assert all(o["runtime"] == "builtin" for o in rep["accuracy"]["outputs"])
    # The FULLY_CONNECTED after the pool is what XNNPACK will not create; the PADV2 is why.
    assert [(r["op"], r["pytorch_module"]) for r in xnn["rejected"]] == [("FULLY_CONNECTED", "fc")]
    assert xnn["rejected"][0]["requant_scale"] >= 256
    pad = next(r for r in xnn["causes"] if r["op"] == "PADV2")
    assert pad["pad_value"] < -1e38 and pad["pytorch_module"] == "pool"
    check = _check(rep, "runs_under_xnnpack")
    assert not check["passed"] and "fc" in check["detail"] and "PADV2" in check["detail"]
    assert rep["verdict"]["passed"] is False


def test_rewritten_ceil_pool_runs_under_xnnpack(tmp_path):
    rep = _convert(tmp_path, "repro_ceil", 16)
    assert rep["xnnpack"]["accepted"] is True and rep["accuracy"]["runtime"] == "xnnpack"
    assert [p["kind"] for p in rep["model"]["pool_rewrites"]] == ["same"]
    assert _check(rep, "runs_under_xnnpack")["passed"]
    assert rep["accuracy"]["outputs"][0]["cosine_min"] >= 0.99


def test_edge_replicated_pool_runs_under_xnnpack(tmp_path):
    rep = _convert(tmp_path, "prelu_padded_pool", 20)
    assert [p["kind"] for p in rep["model"]["pool_rewrites"]] == ["edge"]
    assert rep["xnnpack"]["accepted"] is True and rep["accuracy"]["runtime"] == "xnnpack"
    assert "PADV2" not in rep["model"]["ops"] and "MIRROR_PAD" not in rep["model"]["ops"]
    assert rep["accuracy"]["outputs"][0]["cosine_min"] >= 0.99


def test_resnet18_shaped_net_runs_under_xnnpack(tmp_path):
    rep = _convert(tmp_path, "resnet18", 32)
    assert rep["model"]["pool_rewrites"][0]["kind"] == "bounded" and rep["model"]["pool_rewrites"][0]["pytorch_module"] == "maxpool"
    assert rep["xnnpack"]["accepted"] is True and rep["accuracy"]["runtime"] == "xnnpack"
    assert "PADV2" not in rep["model"]["ops"]
    assert rep["accuracy"]["outputs"][0]["cosine_min"] >= 0.98


def test_face_detector_target(tmp_path):
    """PReLU + ceil-mode pools, three outputs: int8 under XNNPACK, <= 30% of fp32, cosine >= 0.99 each."""
    rep = _convert(tmp_path, "face_detector", 48)
    assert rep["xnnpack"]["accepted"] is True and rep["accuracy"]["runtime"] == "xnnpack"
    assert rep["artifact"]["size_bytes"] <= 0.30 * rep["reference"]["size_bytes"]
    outs = rep["accuracy"]["outputs"]
    assert len(outs) == 3 and all(o["cosine_min"] >= 0.99 for o in outs), [o["cosine_min"] for o in outs]
    assert _check(rep, "full_integer")["passed"]


def test_mixed_keeps_only_the_refused_ops_in_float(tmp_path):
    """Without the rewrite, XNNPACK refuses plain int8; the converter search floats those ops, not the trunk."""
    rep = _convert(tmp_path, "face_detector", 48, quant="mixed", rewrite_pools=False, mixed_search="converter")
    kept = rep["quantization"]["float_layers"]
    assert rep["xnnpack"]["accepted"] is True and rep["accuracy"]["runtime"] == "xnnpack"
    assert 0 < len(kept) <= 5, [k["op"] for k in kept]
    assert {k["op"] for k in kept} <= {"PADV2", "MAX_POOL_2D", "PRELU", "CONV_2D"}
    assert any("XNNPACK refuses the int8 model" in n for n in rep["notes"])
    assert rep["artifact"]["size_bytes"] <= 0.35 * rep["reference"]["size_bytes"]
