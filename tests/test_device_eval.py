"""On-device validation (runners/device_eval.py, `edgeport check`, `convert --target`).

Against the REAL local sshd (tests/sshd_server.py; the "device" python is this venv's), a fake adb
(tests/test_adb_runner.py's, which runs device commands locally), and, when the other half of issue 22
provides it, the emulated arm64 board (`arm64_board` fixture, ARM kernels under qemu). The models are
real int8 and fp16 conversions of two tiny seeded fixtures: a CNN classifier and a two-input,
two-output model (a 4-D feature map among its outputs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sshd_server import Sshd, sshd_fixture  # noqa: F401 - the shared `sshd` fixture
from test_adb_runner import FakeAdb

from edgeport.cli import main
from edgeport.profiles import Budgets, load_profile
from edgeport.runners import device_eval
from edgeport.runners.common import RunOptions
from edgeport.runners.targets import parse_target
from edgeport.validate.judge import device_checks

from fixture_models import TinyCNN, TwoInTwoOut, image_data, seeded

REPO = Path(__file__).resolve().parent.parent
MODES = ("int8", "fp16")


# ----------------------------------------------------------------------------------------- pure units


def test_sampling_keeps_everything_that_fits_and_spreads_the_rest() -> None:
    assert device_eval.pick_samples(10, 100, cap=10_000).tolist() == list(range(10))
    idx = device_eval.pick_samples(1000, 100, cap=100 * 50)
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) > 0)
    seq = device_eval.pick_samples(40, 10, steps=4, cap=10 * 4 * 3)  # 10 sequences of 4 chunks, room for 3
    assert len(seq) == 12 and [int(i) // 4 for i in seq[::4]] == [0, 4, 9]
    assert all(seq[i:i + 4].tolist() == list(range(seq[i], seq[i] + 4)) for i in range(0, 12, 4))  # whole sequences


def _dev(rows: list[dict]) -> dict:
    return {"checked": True, "target": "ssh://pi@b", "samples": 8,
            "agreement": {"outputs": rows, "cosine_mean": min(r["cosine_mean"] for r in rows), "top1_agreement": rows[0]["top1_agreement"]}}


def test_agreement_needs_every_output_by_cosine_or_top1() -> None:
    b = Budgets()
    ok = device_checks(_dev([{"name": "logits", "cosine_mean": 0.9985, "top1_agreement": 1.0},
                             {"name": "fmap", "cosine_mean": 0.99995, "top1_agreement": None}]), b)
    assert ok[0].name == "device_agrees_with_host" and ok[0].passed  # the classifier passes on top-1 alone
    flipped = device_checks(_dev([{"name": "logits", "cosine_mean": 1.0, "top1_agreement": 1.0},
                                  {"name": "fmap", "cosine_mean": -1.0, "top1_agreement": None}]), b)
    assert not flipped[0].passed and "fmap" in flipped[0].detail
    strict = device_checks(_dev([{"name": "logits", "cosine_mean": 0.9985, "top1_agreement": 1.0}]),
                           Budgets(min_device_cosine=0.999, min_device_top1_agreement=1.01))
    assert not strict[0].passed and strict[0].budget == {"min_cosine": 0.999, "min_top1_agreement": 1.01}
    assert device_checks({"checked": False, "target": "adb://x", "reason": "r"}, b) == []


def test_device_budgets_default_and_can_be_set(tmp_path: Path) -> None:
    assert load_profile("raspberry-pi-4").budgets.min_device_cosine == 0.999
    assert load_profile("raspberry-pi-4").budgets.min_device_top1_agreement == 0.995
    text = (REPO / "device_profiles" / "raspberry-pi-4.toml").read_text().replace(
        "[budgets]", "[budgets]\nmin_device_cosine = 0.99\nmin_device_top1_agreement = 0.9", 1)
    (tmp_path / "p.toml").write_text(text)
    assert (load_profile(tmp_path / "p.toml").budgets.min_device_cosine, load_profile(tmp_path / "p.toml").budgets.min_device_top1_agreement) == (0.99, 0.9)


@pytest.mark.parametrize(("case", "wanted"), [
    ("missing_model", "does not exist"), ("not_tflite", ""), ("local_target", "runs the model on a device"),
    ("missing_val", "not found"), ("wrong_shape", ""), ("missing_reference", "--reference"),
    ("short_reference", "fewer rows"), ("bad_json_reference", "not a JSON report"),
])
def test_check_refuses_bad_input_in_one_line_before_the_device(case: str, wanted: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from fixture_models import write_tiny_tflite

    model = write_tiny_tflite(tmp_path / "add.tflite", signature=True)
    np.savez(tmp_path / "val.npz", x=np.ones((6, 16), np.float32))
    np.savez(tmp_path / "short.npz", np.ones((2, 16), np.float32))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    np.savez(tmp_path / "wrong.npz", x=np.ones((6, 5), np.float32))
    argv = {"missing_model": [str(tmp_path / "nope.tflite")], "not_tflite": [str(tmp_path / "junk.tflite")],
            "local_target": [str(model), "--target", "local"], "missing_val": [str(model), "--val", str(tmp_path / "nope.npz")],
            "wrong_shape": [str(model), "--val", str(tmp_path / "wrong.npz")],
            "missing_reference": [str(model), "--reference", str(tmp_path / "nope.npz")],
            "short_reference": [str(model), "--reference", str(tmp_path / "short.npz")],
            "bad_json_reference": [str(model), "--reference", str(tmp_path / "bad.json")]}[case]
    defaults = {"--val": str(tmp_path / "val.npz"), "--target": "ssh://edgeport-test.invalid"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    assert main(["check", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and wanted in err, err


# ------------------------------------------------------------------------------------- real models


def _profile(tmp: Path, python: str, name: str = "raspberry-pi-4") -> Path:
    """`name` with connection.remote_python set (the "device" python of the test)."""
    text = load_profile(name).path.read_text()
    text = text.replace('remote_python = "python3"', f'remote_python = "{python}"') if 'remote_python = "python3"' in text \
        else text.replace("[connection]", f'[connection]\nremote_python = "{python}"')
    path = tmp / f"{name}-{abs(hash(python)) % 10_000}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, sshd: Sshd) -> dict[str, dict]:
    """int8 and fp16 of TinyCNN and TwoInTwoOut, converted once for the module. TinyCNN int8 is converted
    WITH --target ssh:// (the convert hook itself); the others are checked later with `edgeport check`."""
    base = tmp_path_factory.mktemp("deval")
    rng = np.random.default_rng(0)
    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), torch.randn(1, 3, 16, 16)), base / "cnn.ts")
    np.savez(base / "cnn_calib.npz", x=image_data(32, (3, 16, 16)))
    np.savez(base / "cnn_val.npz", x=image_data(24, (3, 16, 16), seed=1), y=rng.integers(0, 5, 24))
    torch.save(seeded(TwoInTwoOut()).state_dict(), base / "two.pt")
    two = {"image": rng.standard_normal((56, 3, 16, 16)).astype(np.float32), "vec": rng.standard_normal((56, 8)).astype(np.float32)}
    np.savez(base / "two_calib.npz", **{k: v[:32] for k, v in two.items()})
    np.savez(base / "two_val.npz", **{k: v[32:] for k, v in two.items()})
    profile = _profile(base, sys.executable)
    remote_tmp = base / "remote_tmp"
    remote_tmp.mkdir()
    found = {}
    for fixture, extra in (("cnn", [str(base / "cnn.ts")]),
                           ("two", [str(base / "two.pt"), "--model-class", "fixture_models:TwoInTwoOut",
                                    "--input-shape", "image=1x3x16x16", "--input-shape", "vec=1x8"])):
        for mode in MODES:
            out = base / f"{fixture}_{mode}"
            target = ["--target", str(sshd.target), *[f"--ssh-option={o}" for o in sshd.options(remote_tmp=remote_tmp)]] \
                if (fixture, mode) == ("cnn", "int8") else []
            code = main(["convert", *extra, "--profile", str(profile), "--quant", mode, "--calib", str(base / f"{fixture}_calib.npz"),
                         "--val", str(base / f"{fixture}_val.npz"), "--output", str(out), "--runs", "2", "--quiet", *target])
            assert code in (0, 1), f"{fixture} {mode}: exit {code}"
            report = json.loads((out / "report.json").read_text())
            found[f"{fixture}_{mode}"] = {"model": Path(report["artifact"]["path"]), "report": out / "report.json",
                                          "val": base / f"{fixture}_val.npz", "data": report}
    found["remote_tmp"] = remote_tmp  # type: ignore[assignment]
    found["profile"] = profile  # type: ignore[assignment]
    return found


def _check(art: dict, target: str, options: list[str], profile: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code = main(["check", str(art["model"]), "--val", str(art["val"]), "--target", target, "--profile", str(profile),
                 "--reference", str(art["report"]), "--json", "--quiet", *[f"--ssh-option={o}" for o in options], *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.slow
def test_convert_with_ssh_target_validates_on_the_device(artifacts: dict) -> None:
    report = artifacts["cnn_int8"]["data"]
    dev = report["device_validation"]
    assert dev["checked"] and dev["target"].startswith("ssh://root@127.0.0.1") and dev["samples"] == dev["sampled_from"] == 24
    assert dev["device"]["runtime"]["name"] == "ai_edge_litert" and dev["device"]["runtime"]["version"]
    assert dev["device"]["python"] == ".".join(map(str, sys.version_info[:3])) and dev["host"]["runtime"]["version"]
    # the same kernels on both sides here: the device reproduces the host run
    assert dev["agreement"]["cosine_mean"] >= 0.99999 and dev["agreement"]["top1_agreement"] == 1.0
    assert dev["accuracy"]["top1_agreement"] == pytest.approx(report["accuracy"]["top1_agreement"])
    assert dev["labels"]["device"] == pytest.approx(report["accuracy"]["tflite"]) and dev["accuracy"]["drop_pp"] is not None
    assert dev["transfer_bytes"]["to_device"] > 24 * 3 * 16 * 16 * 4 and dev["transfer_bytes"]["from_device"] > 0
    checks = {c["name"]: c for c in report["verdict"]["checks"]}
    assert checks["device_agrees_with_host"]["passed"] and "device_accuracy_drop_pp" in checks
    from edgeport.report.summary import summary_lines

    assert any(line.startswith("  on device  ssh://root@127.0.0.1") and "top-1 100.00%" in line for line in summary_lines(report))
    assert list(artifacts["remote_tmp"].iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("key", ["cnn_int8", "cnn_fp16", "two_int8", "two_fp16"])
def test_check_agrees_with_host(artifacts: dict, key: str, sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = _check(artifacts[key], str(sshd.target), sshd.options(remote_tmp=tmp_path), artifacts["profile"], capsys)
    dev = result["device_validation"]
    assert code == 0, result["verdict"]
    assert [c["name"] for c in result["verdict"]["checks"]][0] == "device_agrees_with_host"
    assert all(o["cosine_mean"] >= 0.99999 for o in dev["agreement"]["outputs"])
    assert len(dev["agreement"]["outputs"]) == (2 if key.startswith("two") else 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(("key", "fault", "bad"), [("cnn_int8", "flip-sign", "output_0"), ("two_fp16", "flip-sign:1", "output_1")])
def test_planted_sign_flip_fails_the_device_check(artifacts: dict, key: str, fault: str, bad: str, sshd: Sshd, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(device_eval.FAULT_ENV, fault)
    code, result = _check(artifacts[key], str(sshd.target), sshd.options(remote_tmp=tmp_path), artifacts["profile"], capsys)
    check = result["verdict"]["checks"][0]
    assert code == 1 and check["name"] == "device_agrees_with_host" and not check["passed"] and bad in check["detail"]
    assert result["device_validation"]["fault_planted"] is True
    assert list(tmp_path.iterdir()) == []  # the remote temp dir is gone after a failing verdict too


@pytest.mark.slow
def test_fused_lstm_state_is_reset_per_sample_on_the_device_as_on_the_host(sshd: Sshd, tmp_path: Path) -> None:
    """A fused LSTM keeps h and c in variable tensors between invocations: the device runs the host's own
    per-sample loop (reset before each sample), so every sample agrees. A device that carried one sample's
    final state into the next would start every sequence after the first from the wrong state."""
    from edgeport.zoo.recurrent import LstmEncoder

    kwargs = {"features": 8, "hidden": 16, "layers": 1, "dim": 8}
    torch.manual_seed(0)
    torch.save(LstmEncoder(**kwargs).state_dict(), tmp_path / "enc.pt")
    # 3 steps of large inputs: a carried state moves the float embedding to cosine ~0.96 (measured), far from 0.99999
    np.savez(tmp_path / "val.npz", x=3 * np.random.default_rng(3).standard_normal((12, 3, 8)).astype(np.float32))
    remote_tmp = tmp_path / "remote_tmp"
    remote_tmp.mkdir()
    code = main(["convert", str(tmp_path / "enc.pt"), "--model-class", "edgeport.zoo.recurrent:LstmEncoder",
                 "--model-kwargs", json.dumps(kwargs), "--input-shape", "1x3x8", "--quant", "fp16", "--val", str(tmp_path / "val.npz"),
                 "--profile", str(_profile(tmp_path, sys.executable)), "--output", str(tmp_path / "out"), "--runs", "2", "--quiet",
                 "--target", str(sshd.target), *[f"--ssh-option={o}" for o in sshd.options(remote_tmp=remote_tmp)]])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code in (0, 1) and report["model"]["variable_tensors"] >= 2, report["model"]
    dev = report["device_validation"]
    assert dev["checked"] and dev["agreement"]["cosine_min"] >= 0.99999, dev["agreement"]
    assert next(c for c in report["verdict"]["checks"] if c["name"] == "device_agrees_with_host")["passed"]
    assert list(remote_tmp.iterdir()) == []


@pytest.mark.slow
def test_a_large_validation_set_is_sampled_to_the_transfer_cap(artifacts: dict, sshd: Sshd, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    per_sample = 3 * 16 * 16 * 4 + 5 * 4  # one float input image and five float logits
    monkeypatch.setattr(device_eval, "MAX_TRANSFER_BYTES", 7 * per_sample)
    code, result = _check(artifacts["cnn_int8"], str(sshd.target), sshd.options(remote_tmp=tmp_path), artifacts["profile"], capsys)
    dev = result["device_validation"]
    assert (dev["samples"], dev["sampled_from"], dev["sampled"]) == (7, 24, True) and "7 of 24" in dev["note"]
    assert dev["transfer_bytes"]["from_device"] < 24 * 5 * 4 + 2048 and code == 0


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


@pytest.mark.slow
def test_killed_connection_exits_3_with_one_line_and_cleans_up(artifacts: dict, sshd: Sshd, tmp_path: Path) -> None:
    sleepy = tmp_path / "sleepy-python"  # a device python that is still starting when the link dies
    sleepy.write_text(f"#!/bin/sh\nsleep 30\nexec {sys.executable} \"$@\"\n")
    sleepy.chmod(0o755)
    remote_tmp = tmp_path / "remote_tmp"
    remote_tmp.mkdir()
    art = artifacts["cnn_int8"]
    argv = [sys.executable, "-m", "edgeport", "check", str(art["model"]), "--val", str(art["val"]), "--target", str(sshd.target),
            "--profile", str(_profile(tmp_path, str(sleepy))), "--quiet",
            *[f"--ssh-option={o}" for o in sshd.options(remote_tmp=remote_tmp)]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any((d / "pid").exists() for d in remote_tmp.iterdir()):  # the runner has started on the device
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        for child in _children(sshd.proc.pid):  # the per-connection sshd: the link drops mid-run
            os.kill(child, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "dropped" in lines[0] and lines[0].startswith("edgeport: error:"), stderr
    assert list(remote_tmp.iterdir()) == []


@pytest.mark.slow
def test_missing_runtime_on_the_device_is_one_line_with_the_install_command(artifacts: dict, sshd: Sshd, tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"  # sees no site-packages: no numpy, no TFLite runtime
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    remote_tmp = tmp_path / "remote_tmp"
    remote_tmp.mkdir()
    art = artifacts["cnn_fp16"]
    proc = subprocess.run([sys.executable, "-m", "edgeport", "check", str(art["model"]), "--val", str(art["val"]),
                           "--target", str(sshd.target), "--profile", str(_profile(tmp_path, str(bare))), "--quiet",
                           *[f"--ssh-option={o}" for o in sshd.options(remote_tmp=remote_tmp)]],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr
    assert "no TFLite runtime or numpy" in lines[0] and "pip install ai-edge-litert numpy" in lines[0]
    assert list(remote_tmp.iterdir()) == []


# ------------------------------------------------------------------------------------------------ adb


FAKE_EVAL = r'''#!{python}
"""A device evaluation tool on edgeport's --eval-binary contract, for the fake phone."""
import pathlib, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
runner = Interpreter(model_path=args["model"], num_threads=int(args["num_threads"])).get_signature_runner()
ins = {{k: np.load(pathlib.Path(args["inputs"]) / (k + ".npy")) for k in runner.get_input_details()}}
rows = [runner(**{{k: v[i:i + 1] for k, v in ins.items()}}) for i in range(len(next(iter(ins.values()))))]
for key in runner.get_output_details():
    np.save(pathlib.Path(args["outputs"]) / (key + ".npy"), np.concatenate([r[key] for r in rows]))
'''


@pytest.mark.slow
def test_adb_with_python_on_the_phone(artifacts: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeAdb(tmp_path, monkeypatch)
    code, result = _check(artifacts["two_int8"], "adb://", [], artifacts["profile"], capsys)
    assert code == 0 and result["device_validation"]["how"].endswith("over adb shell"), result
    assert any("pull" in call for call in fake.calls())
    assert list((fake.root / "data/local/tmp").iterdir()) == []


@pytest.mark.slow
def test_adb_with_an_eval_binary_and_without_either(artifacts: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeAdb(tmp_path, monkeypatch)
    no_python = _profile(tmp_path, "python-missing-on-this-phone")
    tool = tmp_path / "edgeport_eval_tool"
    tool.write_text(FAKE_EVAL.format(python=sys.executable))
    code, result = _check(artifacts["cnn_int8"], "adb://", [], no_python, capsys, "--eval-binary", str(tool))
    dev = result["device_validation"]
    assert code == 0 and dev["how"] == "--eval-binary over adb" and dev["agreement"]["cosine_mean"] >= 0.99999, result
    assert list((fake.root / "data/local/tmp").iterdir()) == []
    # neither: `check` fails in one line; convert records why accuracy on the device was not checked
    assert main(["check", str(artifacts["cnn_int8"]["model"]), "--val", str(artifacts["cnn_int8"]["val"]), "--target", "adb://",
                 "--profile", str(no_python), "--quiet"]) == 3
    assert "adb can only time this device" in capsys.readouterr().err
    art = artifacts["cnn_int8"]["data"]
    found = device_eval.validate_on_device(artifacts["cnn_int8"]["model"], parse_target("adb://"), load_profile(no_python),
                                           RunOptions(), {"serving_default_x": {"source": "x", "perm": [0, 2, 3, 1]}},
                                           {"x": image_data(4, (3, 16, 16))}, [np.zeros((4, 5), np.float32)], ["logits"], None, None)
    assert found["checked"] is False and "accuracy was not checked" in found["reason"] and art["device_validation"]["checked"]


# ------------------------------------------------------------------------------- the emulated arm64 board


BOARD_RESULTS = Path(os.environ.get("EDGEPORT_BOARD_RESULTS", "")) if os.environ.get("EDGEPORT_BOARD_RESULTS") else None


@pytest.mark.slow
@pytest.mark.parametrize("key", ["cnn_int8", "cnn_fp16", "two_int8", "two_fp16"])
def test_board_runs_arm_kernels_and_agrees_with_host(request: pytest.FixtureRequest, artifacts: dict, key: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    board = request.getfixturevalue("arm64_board")  # tests/conftest.py (issue 22's board half); skips with its reason
    name = "raspberry-pi-4-emulated" if (REPO / "device_profiles" / "raspberry-pi-4-emulated.toml").exists() else "raspberry-pi-4"
    code, result = _check(artifacts[key], str(board.target), list(board.ssh_options), load_profile(name).path, capsys,
                          "--timeout", "900")
    assert "device_validation" in result, result
    dev = result["device_validation"]
    assert dev["device"]["machine"] == "aarch64", dev["device"]
    assert code == 0, result["verdict"]
    if BOARD_RESULTS is not None:  # the figures for the closing note
        with BOARD_RESULTS.open("a") as f:
            f.write(json.dumps({"model": key, "agreement": dev["agreement"], "device": dev["device"], "host": dev["host"],
                                "samples": dev["samples"], "seconds": dev["seconds"]}) + "\n")
