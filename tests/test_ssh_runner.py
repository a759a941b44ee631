"""ssh runner against a REAL OpenSSH sshd on 127.0.0.1 (started here, as the current user).

The remote python is this venv's interpreter (it has ai_edge_litert), so a tiny .tflite is really
timed end to end. TMPDIR for the remote session is set per test (sshd AcceptEnv + ssh SetEnv), so the
checks that nothing is left behind only look at this test's own remote temp dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sshd_server import SSHD, Sshd, _free_port, _start_sshd, sshd_fixture  # noqa: F401 - the shared `sshd` fixture

from edgeport.errors import DeviceError, InputError
from edgeport.profiles import DeviceProfile, load_profile
from edgeport.runners.common import Deadline, RunOptions, Target
from edgeport.runners.device import run_device
from edgeport.runners.ssh import SshSession, _remote_word, connect_failure_kind, ssh_error
from edgeport.runners.targets import parse_target

from fixture_models import write_tiny_tflite


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-op float model (y = x + x, 1x16) written with the TFLite flatbuffer schema: no TF import."""
    return write_tiny_tflite(tmp_path_factory.mktemp("model") / "tiny_add.tflite")


@pytest.fixture
def remote_tmp(tmp_path: Path) -> Path:
    path = tmp_path / "remote_tmp"
    path.mkdir()
    return path


def _profile(remote_python: str = sys.executable, threads: int = 1) -> DeviceProfile:
    base = load_profile("raspberry-pi-4")
    return replace(base, connection=replace(base.connection, remote_python=remote_python),
                   runtime=replace(base.runtime, threads=threads))


def _bench(sshd: Sshd, model: Path, remote_tmp: Path, *, profile: DeviceProfile | None = None, runs: int = 20,
           timeout_s: float = 30.0, target: Target | None = None, **opts: Path) -> object:
    return run_device(model, target or sshd.target, profile or _profile(),
                      RunOptions(runs=runs, warmup=2, timeout_s=timeout_s, ssh_options=tuple(sshd.options(remote_tmp=remote_tmp, **opts))))


def _python_processes_in(path: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_end_to_end_timing_and_cleanup(sshd: Sshd, tiny_model: Path, remote_tmp: Path) -> None:
    stats = _bench(sshd, tiny_model, remote_tmp, runs=25)
    assert len(stats.samples_ms) == 25 and all(t > 0 for t in stats.samples_ms)  # type: ignore[attr-defined]
    assert stats.source == f"ssh://root@127.0.0.1:{sshd.port}" and stats.threads == 1  # type: ignore[attr-defined]
    data = stats.to_dict()  # type: ignore[attr-defined]
    assert data["p50_ms"] > 0 and data["p90_ms"] >= data["p50_ms"] and data["p50_is_avg"] is False
    assert data["runtime"]["name"] == "ai_edge_litert" and data["runtime"]["version"]
    device = data["device"]
    assert device["machine"] == os.uname().machine and device["cpu_count"] == os.cpu_count()
    assert device["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["inputs"] == [{"name": "x", "shape": [1, 16], "dtype": "float32", "scale": 0.0, "zero_point": 0}]
    assert data["peak_memory_mb"] > 0
    assert list(remote_tmp.iterdir()) == []  # the private temp dir is gone


def test_hostile_model_name_is_copied_verbatim_and_never_executed(sshd: Sshd, tiny_model: Path, remote_tmp: Path,
                                                                  tmp_path: Path) -> None:
    odd = tmp_path / "odd dir" / "m o'd\"e$(touch pwned);`touch pwned2`:x.tflite"
    odd.parent.mkdir()
    shutil.copy(tiny_model, odd)
    stats = _bench(sshd, odd, remote_tmp, runs=3)
    assert len(stats.samples_ms) == 3  # type: ignore[attr-defined]
    home = Path(os.path.expanduser("~"))
    for where in (home, remote_tmp, tmp_path, odd.parent, Path.cwd()):
        assert not (where / "pwned").exists() and not (where / "pwned2").exists()
    assert list(remote_tmp.iterdir()) == []


def test_unknown_host_key_is_refused_with_known_hosts_advice(sshd: Sshd, tiny_model: Path, remote_tmp: Path,
                                                             tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(DeviceError) as err:
        _bench(sshd, tiny_model, remote_tmp, known_hosts=empty)
    msg = str(err.value)
    assert "known_hosts" in msg and "ssh-keyscan -p" in msg and "not in known_hosts" in msg
    assert err.value.exit_code == 3 and "\n" not in msg
    assert empty.read_text() == ""  # strict checking: ssh did not add the key on its own (no accept-new)


def test_changed_host_key_says_so(sshd: Sshd, tiny_model: Path, remote_tmp: Path, tmp_path: Path) -> None:
    other_pub = " ".join(Path(f"{sshd.other_key}.pub").read_text().split()[:2])
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd.port} {other_pub}\n")
    with pytest.raises(DeviceError, match=r"CHANGED.*ssh-keygen -R .*never disables"):
        _bench(sshd, tiny_model, remote_tmp, known_hosts=wrong)


def test_default_options_keep_batch_mode_and_strict_host_keys() -> None:
    session = SshSession(parse_target("ssh://pi@raspberrypi.local:2222"), ["-o", "UserKnownHostsFile=/x"], Deadline(10))
    argv = session.ssh_argv("true", 10)
    assert argv[:3] == ["ssh", "-o", "UserKnownHostsFile=/x"]  # explicit options first: ssh keeps the first value
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv and "ConnectTimeout=10" in argv
    assert not any("StrictHostKeyChecking=no" in a or "accept-new" in a for a in argv)
    assert argv[-4:-1] == ["pi", "--", "raspberrypi.local"] and argv[argv.index("-p") + 1] == "2222"
    assert argv[-1] == "sh -c true"
    scp = session.scp_argv(["/tmp/a b/model.tflite"], "/tmp/edgeport-0123456789abcdef-Ab12Cd34", 10)
    assert scp[-3:] == ["--", "/tmp/a b/model.tflite", "pi@raspberrypi.local:/tmp/edgeport-0123456789abcdef-Ab12Cd34/"]
    assert scp[scp.index("-P") + 1] == "2222"
    v6 = SshSession(parse_target("ssh://[::1]:2222"), [], Deadline(10)).scp_argv(["/m"], "/tmp/d", 10)
    assert v6[-1] == "[::1]:/tmp/d/"


def test_wrong_key_is_an_authentication_failure(sshd: Sshd, tiny_model: Path, remote_tmp: Path) -> None:
    with pytest.raises(DeviceError, match=r"authentication to .* failed \(Permission denied for root\).*ssh-copy-id"):
        _bench(sshd, tiny_model, remote_tmp, key=sshd.other_key)


def test_closed_port_is_unreachable_after_bounded_retries(sshd: Sshd, tiny_model: Path, remote_tmp: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"refused the connection .*port \d+"):
        _bench(sshd, tiny_model, remote_tmp, target=parse_target(f"ssh://root@127.0.0.1:{_free_port()}"), timeout_s=10)
    assert time.monotonic() - t0 < 8  # two retries with 0.5 s + 1 s back-off, not a hang


def test_remote_python_missing(sshd: Sshd, tiny_model: Path, remote_tmp: Path) -> None:
    with pytest.raises(DeviceError, match=r"remote python '/nonexistent/python3' was not found.*connection.remote_python"):
        _bench(sshd, tiny_model, remote_tmp, profile=_profile("/nonexistent/python3"))
    assert list(remote_tmp.iterdir()) == []


def test_remote_runtime_missing_names_the_packages(sshd: Sshd, tiny_model: Path, remote_tmp: Path, tmp_path: Path) -> None:
    # A python that sees no site-packages at all (-I -S): no numpy, no TFLite runtime of any kind.
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    probe = subprocess.run([str(bare), "-c", "import ai_edge_litert"], capture_output=True, timeout=30)
    assert probe.returncode != 0, "the bare python unexpectedly imports ai_edge_litert"
    with pytest.raises(DeviceError) as err:
        _bench(sshd, tiny_model, remote_tmp, profile=_profile(str(bare)))
    msg = str(err.value)
    assert "no TFLite runtime" in msg and "ai-edge-litert" in msg and "tflite-runtime" in msg
    assert list(remote_tmp.iterdir()) == []


def test_remote_timeout_stops_the_run_and_cleans_up(sshd: Sshd, remote_tmp: Path, tmp_path: Path) -> None:
    # 100000 runs (the most --runs allows) of a 16 MB add take minutes: far past the 4 s timeout
    slow = write_tiny_tflite(tmp_path / "slow_add.tflite", size=4_000_000)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=r"tim"):
        _bench(sshd, slow, remote_tmp, runs=100_000, timeout_s=4.0)
    assert time.monotonic() - t0 < 20
    assert list(remote_tmp.iterdir()) == []
    for _ in range(50):  # the remote python was killed through its pid file (or stopped at its own deadline)
        if not _python_processes_in(remote_tmp):
            break
        time.sleep(0.1)
    assert _python_processes_in(remote_tmp) == []


def test_runner_crash_is_reported_with_the_signal(sshd: Sshd, tiny_model: Path, remote_tmp: Path, tmp_path: Path) -> None:
    crasher = tmp_path / "crash-python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    with pytest.raises(DeviceError, match=r"crashed on .* \(signal 11\)"):
        _bench(sshd, tiny_model, remote_tmp, profile=_profile(str(crasher)))
    assert list(remote_tmp.iterdir()) == []


def test_gpu_delegate_is_refused_before_connecting(tiny_model: Path) -> None:
    profile = _profile()
    profile = replace(profile, runtime=replace(profile.runtime, delegate="gpu"))
    with pytest.raises(InputError, match="adb://"):
        run_device(tiny_model, parse_target("ssh://pi@127.0.0.1:1"), profile, RunOptions(runs=1, warmup=0, timeout_s=5))


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        ("ssh: connect to host 10.0.0.9 port 22: Connection timed out\r\n", r"is unreachable"),
        ("ssh: Could not resolve hostname pi.local: Name or service not known\r\n", r"cannot resolve the host name"),
        ("kex_exchange_identification: read: Connection reset by peer\r\n", r"is unreachable"),
        ("root@127.0.0.1: Permission denied (publickey,password).\r\n", r"authentication .* failed"),
    ],
)
def test_recorded_ssh_messages_map_to_clear_errors(stderr: str, expected: str) -> None:
    err = ssh_error(stderr, parse_target("ssh://root@10.0.0.9"), "creating a temp dir")
    assert pytest.importorskip("re").search(expected, str(err))
    retry = connect_failure_kind(stderr)
    assert (retry is None) == ("Permission denied" in stderr)


def test_device_without_sftp_server_falls_back_to_legacy_scp(tmp_path: Path, tiny_model: Path, remote_tmp: Path) -> None:
    # dropbear and minimal images have no sftp-server; OpenSSH >= 9 scp needs one unless given -O
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing")
    base = tmp_path / "sshd_nosftp"
    base.mkdir()
    with _start_sshd(base, sftp=False) as server:
        stats = _bench(server, tiny_model, remote_tmp, runs=3)
    assert len(stats.samples_ms) == 3  # type: ignore[attr-defined]
    assert list(remote_tmp.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("local", Target("local"), "local"),
        ("host", Target("local"), "local"),
        ("sim", Target("sim"), "sim"),
        ("adb://", Target("adb"), "adb://"),
        ("adb://emulator-5554", Target("adb", serial="emulator-5554"), "adb://emulator-5554"),
        ("adb://192.168.1.5:5555", Target("adb", serial="192.168.1.5:5555"), "adb://192.168.1.5:5555"),
        ("ssh://raspberrypi.local", Target("ssh", host="raspberrypi.local"), "ssh://raspberrypi.local"),
        ("ssh://pi@raspberrypi.local", Target("ssh", user="pi", host="raspberrypi.local"), "ssh://pi@raspberrypi.local"),
        ("ssh://pi@10.0.0.7:2222", Target("ssh", user="pi", host="10.0.0.7", port=2222), "ssh://pi@10.0.0.7:2222"),
        ("ssh://[::1]:2222", Target("ssh", host="::1", port=2222), "ssh://[::1]:2222"),
        ("ssh://mendel@[fe80::1%eth0]", Target("ssh", user="mendel", host="fe80::1%eth0"), "ssh://mendel@[fe80::1%eth0]"),
    ],
)
def test_parse_target_accepts(text: str, expected: Target, canonical: str) -> None:
    target = parse_target(text)
    assert target == expected and str(target) == canonical


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ssh://-oProxyCommand=touch_pwned", "must not start with '-'"),
        ("ssh://-p@host", "must not start with '-'"),
        ("adb://-s", "must not start with '-'"),
        ("ssh://pi@host;reboot", "character ';'"),
        ("ssh://pi@host|cat", "character '|'"),
        ("ssh://pi@host&", "character '&'"),
        ("ssh://$(touch x)@host", "character '$'"),
        ("ssh://$HOME@host", "character '$'"),
        ("ssh://`id`@host", "character '`'"),
        ("ssh://pi@ho'st", "character \"'\""),
        ('ssh://pi@ho"st', "character '\"'"),
        ("ssh://pi@host\nrm", "control character"),
        ("ssh://pi @host", "whitespace"),
        ("ssh://pi@host:0", "invalid port"),
        ("ssh://pi@host:99999", "invalid port"),
        ("ssh://pi@host:22x", "invalid port"),
        ("ssh://pi@host/path", "has a path"),
        ("ssh://::1", "without brackets"),
        ("ssh://[::1", "unclosed"),
        ("ssh://", "no host"),
        ("ssh://@host", "empty user"),
        ("ssh://pi@host_name.", "invalid ssh host"),
        ("adb://ser/ial", "invalid adb serial"),
        ("tcp://host", "unknown --target"),
        ("", "empty"),
    ],
)
def test_parse_target_rejects_hostile_or_malformed(text: str, problem: str) -> None:
    with pytest.raises(InputError) as err:
        parse_target(text)
    assert problem in str(err.value) and err.value.exit_code == 2 and "\n" not in str(err.value)


def test_edgetpu_delegate_that_cannot_load_is_a_clear_error(sshd: Sshd, tiny_model: Path, remote_tmp: Path) -> None:
    profile = _profile()
    profile = replace(profile, runtime=replace(profile.runtime, delegate="edgetpu"))
    with pytest.raises(DeviceError, match=r"Edge TPU delegate did not load .*libedgetpu.so.1.*libedgetpu1-std"):
        _bench(sshd, tiny_model, remote_tmp, profile=profile, runs=2)
    assert list(remote_tmp.iterdir()) == []


def test_remote_python_words_are_quoted_but_keep_home() -> None:
    assert _remote_word("~/venv/bin/python") == '"$HOME"/venv/bin/python'
    assert _remote_word("/opt/my env/python3") == "'/opt/my env/python3'"
    assert _remote_word("$(reboot)") == "'$(reboot)'"


def test_remote_bench_inputs_follow_dtype_and_quantization() -> None:
    import numpy as np

    from edgeport.runners import remote_bench

    rng = np.random.default_rng(0)
    f = remote_bench.random_input(np, rng, {"dtype": np.float32, "shape": [1, 4], "quantization": (0.0, 0)})
    q = remote_bench.random_input(np, rng, {"dtype": np.int8, "shape": [2, 3], "quantization": (0.02, -5)})
    u = remote_bench.random_input(np, rng, {"dtype": np.uint8, "shape": [64], "quantization": (0.5, 128)})
    ids = remote_bench.random_input(np, rng, {"dtype": np.int32, "shape": [1, 8], "quantization": (0.0, 0)})
    mask = remote_bench.random_input(np, rng, {"dtype": np.bool_, "shape": [3], "quantization": (0.0, 0)})
    assert f.dtype == np.float32 and f.shape == (1, 4)
    assert q.dtype == np.int8 and q.shape == (2, 3) and q.min() >= -128 and q.max() <= 127
    assert u.dtype == np.uint8 and 100 < u.mean() < 156  # N(0,1)/0.5 + 128 stays near the zero point
    assert ids.dtype == np.int32 and set(ids.ravel()) <= {0, 1}
    assert mask.dtype == np.bool_
    again = remote_bench.random_input(np, np.random.default_rng(0), {"dtype": np.float32, "shape": [1, 4], "quantization": (0.0, 0)})
    assert np.array_equal(f, again)  # seeded: the same inputs on every device


@pytest.mark.slow
def test_convert_folds_ssh_device_latency_into_the_verdict(sshd: Sshd, remote_tmp: Path, tmp_path: Path) -> None:
    """`convert --target ssh://...` times the written model on the (real) ssh host; the latency
    check then judges the device number, not the host's."""
    import json

    import numpy as np
    import torch

    from edgeport.cli import main

    from fixture_models import TinyCNN, image_data, seeded

    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), torch.randn(1, 3, 16, 16)), tmp_path / "tiny.ts")
    np.savez(tmp_path / "calib.npz", x=image_data(40, (3, 16, 16)))
    profile = tmp_path / "my-pi.toml"
    text = (Path(__file__).resolve().parent.parent / "device_profiles" / "raspberry-pi-4.toml").read_text()
    profile.write_text(text.replace('remote_python = "python3"', f'remote_python = "{sys.executable}"')
                       if 'remote_python = "python3"' in text else text.replace("[connection]", f'[connection]\nremote_python = "{sys.executable}"'))
    opts = [f"--ssh-option={o}" for o in sshd.options(remote_tmp=remote_tmp)]
    code = main(["convert", str(tmp_path / "tiny.ts"), "--profile", str(profile), "--quant", "int8", "--calib",
                 str(tmp_path / "calib.npz"), "--output", str(tmp_path / "out"), "--runs", "5",
                 "--target", f"ssh://root@127.0.0.1:{sshd.port}", *opts])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    device = report["latency"]["device"]
    assert device["p50_ms"] is not None and device["target"].startswith("ssh://root@127.0.0.1")
    check = next(c for c in report["verdict"]["checks"] if c["name"] == "latency_p50_ms")
    assert check["value"] == device["p50_ms"] and "ssh://" in check["detail"]
    assert code in (0, 1)
    assert not any(remote_tmp.iterdir()), "remote temp dir cleaned up"
