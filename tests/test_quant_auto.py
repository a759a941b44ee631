"""--quant auto and the speed warnings on real conversions (quantize/auto.py, validate/speed.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.pipeline import convert
from edgeport.profiles import load_profile
from edgeport.quantize.auto import ORDER
from edgeport.tflite.reader import inspect_model
from edgeport.validate.speed import slowdowns

from fixture_models import HardSwishStack, seeded

pytestmark = pytest.mark.slow
PROFILE = "raspberry-pi-4"


@pytest.fixture(scope="module")
def hswish(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hswish")
    torch.save(seeded(HardSwishStack()).state_dict(), root / "hs.pt")
    np.savez(root / "calib.npz", x=np.random.default_rng(0).uniform(-1, 1, (64, 3, 32, 32)).astype(np.float32))
    return {"ckpt": root / "hs.pt", "calib": root / "calib.npz", "root": root}


def _convert(files: dict[str, Path], quant: str, out: str, **kw) -> dict:
    return convert(files["ckpt"], PROFILE, model_class="fixture_models:HardSwishStack", input_shapes=["1x3x32x32"],
                   calib=str(files["calib"]), quant=quant, runs=3, output=files["root"] / out, **kw).data


@pytest.fixture(scope="module")
def auto_report(hswish) -> dict:
    return _convert(hswish, "auto", "auto")


@pytest.fixture(scope="module")
def plain_int8(hswish) -> dict:
    """A plain --quant int8 convert, its work folder kept (fp32.tflite beside int8.tflite)."""
    return _convert(hswish, "int8", "int8", keep_work=True)


def test_auto_builds_every_allowed_mode_and_keeps_one(auto_report):
    section = auto_report["quant_auto"]
    allowed = load_profile(PROFILE).runtime.allowed_quant
    assert [c["mode"] for c in section["candidates"]] == [m for m in ORDER if m in allowed]
    chosen = [c for c in section["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["mode"] == section["chosen"] == auto_report["quantization"]["mode"]
    assert auto_report["artifact"]["path"].endswith(f"_{section['chosen']}.tflite")
    assert auto_report["options"]["quant"] == "auto"
    for row in section["candidates"]:
        assert row["chosen"] or row["lost_because"], row
    # The rule, checked by hand on the rows: nothing accurate enough is smaller than 95% of the chosen file.
    accurate = [c for c in section["candidates"] if c["meets_task"]]
    assert chosen[0] in accurate
    assert min(c["size_bytes"] for c in accurate) >= chosen[0]["size_bytes"] / 1.05
    mixed = next(c for c in section["candidates"] if c["mode"] == "mixed")
    int8 = next(c for c in section["candidates"] if c["mode"] == "int8")
    assert (mixed["skipped"] is not None) == int8["meets_task"], "mixed runs only when int8 misses the budget"


def test_auto_candidates_are_the_files_a_plain_convert_writes(auto_report, plain_int8):
    plain = plain_int8
    row = next(c for c in auto_report["quant_auto"]["candidates"] if c["mode"] == "int8")
    assert row["size_bytes"] == plain["artifact"]["size_bytes"]
    assert row["task_metric"]["value"] == pytest.approx(plain["accuracy"]["top1_agreement"])
    assert isinstance(plain["verdict"]["warnings"], list)


def test_a_slower_int8_model_is_blamed_on_the_ops_outside_xnnpack(hswish, plain_int8):
    work = next((hswish["root"] / "int8").glob(".edgeport-work-*"))
    int8, fp32 = inspect_model(work / "int8.tflite"), inspect_model(work / "fp32.tflite")
    prof = load_profile(PROFILE)
    host = next(w for w in slowdowns("int8", int8, fp32, prof, host_ms=5.0, host_fp32_ms=1.0) if w["source"] == "host")
    assert host["ratio"] == pytest.approx(5.0)
    assert host["ops"][0]["op"] == "HARD_SWISH" and host["ops"][0]["count"] == 13
    assert "5.0x slower than fp32" in host["text"] and "13 HARD_SWISH run outside XNNPACK" in host["text"]
    assert not [w for w in slowdowns("int8", int8, fp32, prof, host_ms=1.0, host_fp32_ms=1.0) if w["source"] == "host"]
    assert slowdowns("fp32", fp32, None, prof, 1.0, 1.0) == []
