"""Bad input through the real CLI: exit 2, one line naming problem and fix, no traceback, nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from edgeport.cli import main

from fixture_models import TinyCNN, seeded
from stderr_lines import error_lines


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    model = seeded(TinyCNN())
    torch.save(model.state_dict(), d / "sd.pt")
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 16, 16)), d / "m.ts")
    (d / "empty.pt").write_bytes(b"")
    (d / "corrupt.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    good = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32)
    nan = good.copy()
    nan[3, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=nan)
    np.savez(d / "gray.npz", x=good[:, :1])
    np.savez(d / "nhwc.npz", x=good.transpose(0, 2, 3, 1))
    np.savez(d / "few.npz", x=good[:3])
    np.savez(d / "good.npz", x=good)
    (d / "empty_imgs").mkdir()
    (d / "bad_imgs" / "cat").mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(d / "bad_imgs" / "cat" / "ok.png")
    (d / "bad_imgs" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    (d / "bad_profile.toml").write_text('description = "x"\n[runtime\nthreads = 2\n')
    (d / "typo_profile.toml").write_text((Path(__file__).parent.parent / "device_profiles" / "host.toml")
                                         .read_text().replace("threads =", "thread =", 1))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    dyn = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y]),
                            opset_imports=[helper.make_opsetid("", 17)])
    dyn.ir_version = 8
    onnx.save(dyn, str(d / "dyn.onnx"))
    x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    odd = helper.make_model(helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], name="weird_node")], "g", [x2], [y]),
                            opset_imports=[helper.make_opsetid("", 17)])
    odd.ir_version = 8
    onnx.save(odd, str(d / "odd.onnx"))
    (d / "not_a_dir").write_text("a file")
    (d / "model.tflite").write_bytes(b"garbage that is not a flatbuffer")
    return {k: str(d / k) for k in ["sd.pt", "m.ts", "empty.pt", "corrupt.pt", "nan.npz", "gray.npz", "nhwc.npz", "few.npz",
                                     "good.npz", "empty_imgs", "bad_imgs", "bad_profile.toml", "typo_profile.toml",
                                     "dyn.onnx", "odd.onnx", "not_a_dir", "model.tflite"]} | {"dir": str(d)}


def _evil(path: Path, marker: Path) -> None:
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"w": Evil()}, path)


CASES = [
    # (id, argv template, regex the message must match)
    ("missing-checkpoint", ["convert", "/nonexistent/m.pt", "--profile", "host"], "does not exist"),
    ("empty-checkpoint", ["convert", "{empty.pt}", "--profile", "host"], "empty"),
    ("corrupt-checkpoint", ["convert", "{corrupt.pt}", "--profile", "host"], "damaged|corrupt|could not"),
    ("state-dict-no-class", ["convert", "{sd.pt}", "--profile", "host", "--quant", "fp32"], "--model-class"),
    ("state-dict-mismatch", ["convert", "{sd.pt}", "--profile", "host", "--quant", "fp32", "--model-class", "fixture_models:TinyCNN",
                             "--model-kwargs", '{"channels": 4}'], "does not match"),
    ("bad-kwargs-json", ["convert", "{sd.pt}", "--profile", "host", "--model-class", "fixture_models:TinyCNN",
                         "--model-kwargs", "{channels: 4}"], "JSON"),
    ("bad-class-path", ["convert", "{sd.pt}", "--profile", "host", "--model-class", "nosuchmodule_xyz:Net"], "cannot import"),
    ("bad-input-shape", ["convert", "{m.ts}", "--profile", "host", "--input-shape", "1x3xfoo"], "--input-shape"),
    ("wrong-input-shape", ["convert", "{m.ts}", "--profile", "host", "--quant", "fp32", "--input-shape", "1x5x16x16"],
     "failed on inputs.*--input-shape"),
    ("no-input-shape", ["convert", "{m.ts}", "--profile", "host", "--quant", "fp32"], "input shape .* unknown.*--input-shape"),
    ("dynamic-onnx", ["convert", "{dyn.onnx}", "--profile", "host", "--quant", "fp32"], "dynamic dims.*--input-shape x=1x3xHxW"),
    ("unknown-input-name", ["convert", "{dyn.onnx}", "--profile", "host", "--quant", "fp32", "--input-shape", "z=1x3x8x8"],
     "unknown input 'z'"),
    ("unsupported-op", ["convert", "{odd.onnx}", "--profile", "host", "--quant", "fp32"], "Mystery.*weird_node"),
    ("unknown-profile", ["convert", "{m.ts}", "--profile", "raspbery-pi-4"], "raspberry-pi-4"),
    ("malformed-profile", ["convert", "{m.ts}", "--profile", "{bad_profile.toml}"], "line"),
    ("profile-typo", ["convert", "{m.ts}", "--profile", "{typo_profile.toml}"], "runtime.thread.*runtime.threads"),
    ("fp16-on-coral", ["convert", "{m.ts}", "--profile", "coral-usb", "--quant", "fp16"], "does not allow --quant fp16.*int8"),
    ("int8-without-calib", ["convert", "{m.ts}", "--profile", "host", "--quant", "int8", "--input-shape", "1x3x16x16"], "--calib"),
    ("nan-calib", ["convert", "{m.ts}", "--profile", "host", "--calib", "{nan.npz}", "--input-shape", "1x3x16x16"], "NaN"),
    ("wrong-channels", ["convert", "{m.ts}", "--profile", "host", "--calib", "{gray.npz}", "--input-shape", "1x3x16x16"], "channel|shape"),
    ("nhwc-layout", ["convert", "{m.ts}", "--profile", "host", "--calib", "{nhwc.npz}", "--input-shape", "1x3x16x16"], "NHWC"),
    ("too-few-samples", ["convert", "{m.ts}", "--profile", "host", "--calib", "{few.npz}", "--input-shape", "1x3x16x16"], "samples"),
    ("empty-image-folder", ["convert", "{m.ts}", "--profile", "host", "--calib", "{empty_imgs}", "--input-shape", "1x3x16x16"],
     "no images|empty"),
    ("unreadable-image", ["convert", "{m.ts}", "--profile", "host", "--calib", "{bad_imgs}", "--input-shape", "1x3x16x16"], "broken.png"),
    ("unknown-builtin", ["convert", "{m.ts}", "--profile", "host", "--calib", "builtin:nope", "--input-shape", "1x3x16x16"],
     "builtin:digits"),
    ("output-not-writable", ["convert", "{m.ts}", "--profile", "host", "--quant", "fp32", "--input-shape", "1x3x16x16",
                             "--output", "{not_a_dir}/sub"], "not writable"),
    ("bad-preprocess", ["convert", "{m.ts}", "--profile", "host", "--preprocess", "mean"], "KEY=VALUE"),
    ("diagnose-not-int8", ["convert", "{m.ts}", "--profile", "host", "--quant", "fp16", "--diagnose"], "--diagnose.*--quant int8"),
    ("bad-quant", ["convert", "{m.ts}", "--profile", "host", "--quant", "int4"], "invalid choice"),
    ("no-command", [], "no command"),
    ("unknown-flag", ["convert", "{m.ts}", "--profile", "host", "--frobnicate"], "unrecognized"),
    ("inspect-not-tflite", ["inspect", "{model.tflite}"], "not a TFLite"),
    ("bench-missing", ["bench", "/nonexistent.tflite"], "does not exist"),
    ("profiles-show-unknown", ["profiles", "show", "pixel-8"], "pixel-7"),
]


@pytest.mark.parametrize("case_id,argv,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input(files, tmp_path, capsys, case_id, argv, pattern):
    out_dir = tmp_path / "out"
    args = [re.sub(r"\{([^}]+)\}", lambda m: files.get(m.group(1), m.group(0)), a) for a in argv]
    if args and args[0] == "convert" and "--output" not in args:
        args += ["--output", str(out_dir)]
    code = main(args)
    captured = capsys.readouterr()
    # Progress lines ("[12:00:01] export: ...") announce stages that ran before the failure on a slow
    # machine; the error itself must still be a single line.
    lines = error_lines(captured.err)
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("edgeport: error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert re.search(pattern, lines[0]), lines[0]
    assert not out_dir.exists(), "a failed run must not leave output behind"


def test_malicious_pickle_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    _evil(tmp_path / "evil.pt", marker)
    code = main(["convert", str(tmp_path / "evil.pt"), "--profile", "host", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-pickle" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_json_error_output(capsys):
    code = main(["convert", "/nonexistent.pt", "--profile", "host", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 2 and out["exit_code"] == 2 and "does not exist" in out["error"]


def test_debug_shows_traceback(capsys):
    assert main(["convert", "/nonexistent.pt", "--profile", "host", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
