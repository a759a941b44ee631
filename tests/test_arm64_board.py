"""The emulated arm64 board (scripts/arm64_board.sh, fixture tests/arm64_board.py) and the rule that
an emulated device's time is recorded but never judged.

The unit tests are fast and need no board. The board tests are slow: they reuse the board that
scripts/test.sh or .ci/run built before pytest (minutes the first time, root, network for pip) and
start it in seconds; they skip with the reason where it is not built or cannot start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from arm64_board import Arm64Board

from edgeport import bench as bench_mod
from edgeport.cli import main
from edgeport.errors import ProfileError
from edgeport.latency import host_fit
from edgeport.profiles import load_profile
from edgeport.runners import board
from edgeport.types import LatencyStats
from edgeport.validate.judge import EMULATED_NOTE, Evidence, judge, judged_latency

REPO = Path(__file__).resolve().parent.parent
HWCAP_ASIMD, HWCAP_ASIMDDP = 1 << 1, 1 << 20  # Linux arm64 hwcaps: NEON; SDOT/UDOT (absent on Cortex-A72)


# ------------------------------------------------------------------ the emulated rule (unit, fast)


def _latency_check(**kw) -> dict:
    budgets = load_profile("raspberry-pi-4-emulated").budgets
    ev = Evidence(mode="int8", size_bytes=1000, device_target="ssh://root@127.0.0.1:2222", **kw)
    return next(c for c in judge(ev, budgets)["checks"] if c["name"] == "latency_p50_ms")


def test_emulated_device_time_is_recorded_not_judged() -> None:
    budget = load_profile("raspberry-pi-4-emulated").budgets.latency_p50_ms
    slow = budget * 5  # an emulator's time, far over the budget
    judged = _latency_check(latency_ms={"device": slow, "simulated": budget / 2, "host": 1.0}, device_emulated=True)
    assert judged["passed"] and judged["value"] == budget / 2
    assert EMULATED_NOTE in judged["detail"] and f"{slow:g} ms recorded, not judged" in judged["detail"]
    # The same time from a real device is judged, and fails.
    real = _latency_check(latency_ms={"device": slow, "simulated": budget / 2, "host": 1.0})
    assert not real["passed"] and real["value"] == slow and EMULATED_NOTE not in real["detail"]


def test_emulated_device_falls_through_to_the_next_measured_source() -> None:
    assert judged_latency({"device": 900.0, "simulated": None, "host": 3.0}, True) == ("host", 3.0)
    assert judged_latency({"device": 900.0, "simulated": None, "host": 3.0}, False) == ("device", 900.0)
    assert judged_latency({"device": 900.0}, True) == ("", None)  # nothing else measured: "not measured" fails


def test_bench_marks_an_emulated_profile_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from fixture_models import write_tiny_tflite

    model = write_tiny_tflite(tmp_path / "m.tflite")
    monkeypatch.setattr(bench_mod, "run_device", lambda *a, **k: LatencyStats.from_samples([300.0, 310.0, 320.0], "ssh"))
    for profile, emulated in (("raspberry-pi-4-emulated", True), ("raspberry-pi-4", False)):
        code = main(["bench", str(model), "--profile", profile, "--target", "ssh://root@127.0.0.1:2222", "--runs", "3"])
        out = capsys.readouterr().out
        assert code == 0 and ("emulated: accuracy only" in out) is emulated, out
        main(["bench", str(model), "--profile", profile, "--target", "ssh://root@127.0.0.1:2222", "--runs", "3", "--json"])
        result = json.loads(capsys.readouterr().out)["results"]["ssh://root@127.0.0.1:2222"]
        assert result.get("emulated", False) is emulated and result["p50_ms"] == 310.0


def test_summary_says_emulated_beside_the_device_time() -> None:
    from edgeport.report.summary import empty_report, summary_lines

    report = empty_report()
    report["quantization"]["mode"] = "int8"
    report["latency"]["device"] = {"p50_ms": 300.0, "p90_ms": 320.0, "target": "ssh://root@127.0.0.1:2222", "emulated": True}
    line = next(ln for ln in summary_lines(report) if "device ssh://" in ln)
    assert "300.000 ms" in line and "emulated: accuracy only" in line
    del report["latency"]["device"]["emulated"]
    assert not any("emulated" in ln for ln in summary_lines(report))


def test_emulated_profile_is_the_pi_4_with_the_flag(tmp_path: Path) -> None:
    emu, pi = load_profile("raspberry-pi-4-emulated"), load_profile("raspberry-pi-4")
    assert emu.connection.emulated and not pi.connection.emulated
    assert (emu.hardware, emu.runtime, emu.budgets) == (pi.hardware, pi.runtime, pi.budgets)
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "device_profiles" / "raspberry-pi-4-emulated.toml").read_text()
                   .replace("emulated = true", 'emulated = "yes"'))
    with pytest.raises(ProfileError, match="connection.emulated must be true or false"):
        load_profile(bad)


# --------------------------------------------------------------------- board state (unit, fast)


@pytest.mark.parametrize("env", [{}, {"XDG_CACHE_HOME": "/x/cache"}, {"EDGEPORT_CACHE_DIR": "/y/ep"},
                                 {"EDGEPORT_CACHE_DIR": "/y/ep", "XDG_CACHE_HOME": "/x/cache"}])
def test_board_uses_edgeports_cache_folder(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key in ("EDGEPORT_CACHE_DIR", "XDG_CACHE_HOME", board.BOARD_ENV):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert board.cache_root() == host_fit.cache_root()
    assert board.board_dir() == host_fit.cache_root() / "boards" / "arm64-bookworm"


def test_half_built_or_stale_board_is_not_built(tmp_path: Path) -> None:
    p = board.paths(tmp_path)
    assert not board.state(tmp_path).built and "not built" in board.state(tmp_path).reason
    (p.root / "opt/lrt/bin").mkdir(parents=True)  # debootstrap and the venv ran, the build never finished
    (p.root / "opt/lrt/bin/python").write_text("")
    st = board.state(tmp_path)
    assert not st.built and "half-built" in st.reason and st.target is None
    p.stamp.write_text(json.dumps({"recipe": "an-older-recipe"}))
    assert not board.state(tmp_path).built
    p.stamp.write_text(json.dumps({"recipe": board.recipe_hash(), "versions": {"numpy": "x"}}))
    st = board.state(tmp_path)
    assert st.built and not st.running and "start" in st.reason
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p.run.write_text(json.dumps({"pid": 1, "port": port}))  # pid 1 lives outside the board's root: stale
    assert not board.state(tmp_path).running


def test_the_last_session_out_stops_a_board_the_sessions_started(tmp_path: Path) -> None:
    from edgeport.runners import board_build

    p = board.paths(tmp_path)
    p.leases.mkdir(parents=True)
    mine, other, dead = p.leases / str(os.getpid()), p.leases / str(os.getppid()), p.leases / "999999999"
    for lease in (mine, other, dead):
        lease.write_text("")
    p.run.write_text(json.dumps({"pid": 1, "port": 1, "by": "session"}))
    board_build.release(p, mine)  # another live session still uses it; the dead one's lease is dropped
    assert p.run.exists() and not dead.exists() and other.exists()
    board_build.release(p, other)
    assert not p.run.exists()  # the last one out stopped it
    p.run.write_text(json.dumps({"pid": 1, "port": 1, "by": "script"}))
    mine.write_text("")
    board_build.release(p, mine)
    assert p.run.exists()  # started by hand: stays up


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_wipe_unmounts_first_and_never_deletes_through_a_mount(tmp_path: Path) -> None:
    """A half-built root is wiped; the host's /dev bound into it must survive (path with a space, as
    /proc/self/mountinfo escapes it)."""
    from edgeport.runners import board_build

    root, outside = tmp_path / "a root", tmp_path / "outside"
    (root / "dev").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("host file")
    subprocess.run(["mount", "--bind", str(outside), str(root / "dev")], check=True)
    try:
        assert board_build._mounts_under(root) == [root / "dev"]
        board_build._wipe(root)
    finally:
        subprocess.run(["umount", str(root / "dev")], capture_output=True)
    assert not root.exists() and (outside / "keep").read_text() == "host file"


def test_fixture_skips_with_the_reason_and_never_builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import arm64_board
    from arm64_board import board_session

    from edgeport.runners import board_build

    def no_build(*_a, **_k):
        raise AssertionError("the fixture must not build the board (it downloads)")

    monkeypatch.setenv(board.BOARD_ENV, str(tmp_path))
    monkeypatch.setattr(board_build, "build", no_build)
    with pytest.raises(pytest.skip.Exception, match="arm64 board not built .*sudo scripts/arm64_board.sh build"), \
            board_session():
        pass
    # built, but this process is not root: starting it needs root
    monkeypatch.setattr(arm64_board, "built_info", lambda _p: {"versions": {}})
    monkeypatch.setattr(board_build.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="arm64 board unavailable: .*needs root"), board_session():
        pass
    assert list(tmp_path.iterdir()) == []  # nothing half-made


def test_ssh_options_keep_host_keys_checked(tmp_path: Path) -> None:
    opts = board.ssh_options(board.paths(tmp_path))
    assert all(o.startswith(("-i", "-o")) and " " not in o for o in opts)  # one argv word each
    assert "-oStrictHostKeyChecking=yes" in opts and f"-oUserKnownHostsFile={tmp_path / 'known_hosts'}" in opts
    assert f"-i{tmp_path / 'client_ed25519'}" in opts and "-oIdentitiesOnly=yes" in opts


def test_doctor_reports_the_board(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeport import doctor

    monkeypatch.setenv(board.BOARD_ENV, str(tmp_path))
    data = doctor.diagnose(import_check=False)
    assert data["board"]["built"] is False and data["board"]["dir"] == str(tmp_path)
    assert data["exit_code"] == 0 or "board" not in " ".join(data["problems"])  # optional: never a problem
    line = next(ln for ln in doctor.summary(data) if ln.lstrip().startswith("board"))
    assert "not built" in line and "scripts/arm64_board.sh build" in line


# ------------------------------------------------------------------------- on the board (slow)


def _ssh(b: Arm64Board, command: str) -> str:
    proc = subprocess.run([*b.ssh_argv, command], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


HWCAP_SCRIPT = ("import struct; d = open('/proc/self/auxv', 'rb').read(); "
                "a = dict(struct.iter_unpack('<QQ', d)); print(a.get(16, 0))")  # AT_HWCAP = 16


@pytest.mark.slow
def test_board_is_aarch64_and_emulates_the_pi_4_core(arm64_board: Arm64Board) -> None:
    assert _ssh(arm64_board, "uname -m") == "aarch64"
    assert _ssh(arm64_board, "echo $QEMU_CPU") == "cortex-a72"
    # QEMU_CPU really reaches the processes: a Cortex-A72 has NEON but no SDOT (an Armv8.2 option),
    # while qemu's default CPU ("max") has both.
    a72 = int(_ssh(arm64_board, f'python3 -c "{HWCAP_SCRIPT}"'))
    full = int(_ssh(arm64_board, f'QEMU_CPU=max python3 -c "{HWCAP_SCRIPT}"'))
    assert a72 & HWCAP_ASIMD and not a72 & HWCAP_ASIMDDP
    assert full & HWCAP_ASIMDDP


def _int8_tflite(path: Path) -> Path:
    """A tiny seeded conv classifier, full int8 through the TF converter (XNNPACK's qs8 kernels on ARM)."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.DepthwiseConv2D(3), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])

    def rep():
        rng = np.random.default_rng(0)
        for _ in range(8):
            yield [rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path.write_bytes(conv.convert())
    return path


@pytest.mark.slow
def test_bench_runs_on_the_board_and_leaves_nothing_behind(arm64_board: Arm64Board, tmp_path: Path, capsys) -> None:
    model = _int8_tflite(tmp_path / "tiny_int8.tflite")
    remote_tmp = f"/tmp/edgeport-board-test-{uuid.uuid4().hex[:8]}"  # this test's own $TMPDIR on the board
    _ssh(arm64_board, f"mkdir -p {remote_tmp}")
    set_tmp = f"-oSetEnv=TMPDIR={remote_tmp}"
    probe = subprocess.run([*arm64_board.ssh_argv[:-1], set_tmp, arm64_board.ssh_argv[-1], "echo $TMPDIR"],
                           capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == remote_tmp, probe.stderr  # the runner's temp dir will be made in there
    try:
        # No remote_python given: the runner's default python3 finds the board's venv through its PATH.
        code = main(["bench", str(model), "--profile", "raspberry-pi-4-emulated", "--target", arm64_board.target,
                     *arm64_board.cli_options, f"--ssh-option={set_tmp}", "--runs", "5", "--json"])
        out = capsys.readouterr().out
        assert code == 0, out
        result = json.loads(out)["results"][arm64_board.target]
        assert result["p50_ms"] > 0 and result["runs"] == 5 and result["emulated"] is True
        assert _ssh(arm64_board, f"ls -A {remote_tmp}") == ""  # the runner's temp dir is gone
    finally:
        _ssh(arm64_board, f"rm -rf {remote_tmp}")
