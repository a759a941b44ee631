"""adb runner against a fake `adb` that behaves like a device: it runs the shell commands it receives
with /bin/sh under a private directory standing in for /data/local/tmp, so the real command strings
(quoting, exit-code marker, pid file, cleanup) are exercised. The pushed "benchmark_model" replays a
recorded log from fixtures/benchmark_model/. Every adb argv and every benchmark argv is recorded.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from edgeport.errors import DeviceError, InputError
from edgeport.profiles import DeviceProfile, load_profile
from edgeport.runners.adb import parse_devices
from edgeport.runners.common import RunOptions
from edgeport.runners.device import run_device
from edgeport.runners.targets import parse_target

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
SERIAL = "R58M12ABCDE"

FAKE_ADB = r'''#!{python}
"""Fake adb: records argv, fakes `devices`/`push`, runs `shell` commands locally under FAKE_ADB_ROOT."""
import json, os, shutil, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
root = os.environ["FAKE_ADB_ROOT"]
if args[:1] == ["-s"]:
    args = args[2:]
if args[0] == "devices":
    sys.stdout.write("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n")
    sys.stdout.write("List of devices attached\n" + os.environ.get("FAKE_ADB_DEVICES", "") + "\n")
    sys.exit(0)
if os.environ.get("FAKE_ADB_ERROR"):
    sys.stderr.write(os.environ["FAKE_ADB_ERROR"] + "\n")
    sys.exit(1)
if args[0] == "push":
    src, dst = args[1], args[2]
    if os.path.basename(dst) != os.environ.get("FAKE_ADB_DROP"):
        shutil.copy(src, root + dst)
    print(src + ": 1 file pushed, 0 skipped. 12.3 MB/s (336 bytes in 0.000s)")
    sys.exit(0)
if args[0] == "shell":
    command = " ".join(args[1:]).replace("/data/local/tmp", root + "/data/local/tmp")
    if os.environ.get("FAKE_ADB_NOEXEC") and "chmod" in command:
        command = command.replace("chmod 755", "true")
    env = dict(os.environ, PATH=os.environ["FAKE_DEVICE_BIN"] + ":" + os.environ["PATH"])
    sys.exit(subprocess.call(["/bin/sh", "-c", command], env=env))
if args[0] == "pull":
    shutil.copy(root + args[1], args[2])
    print(args[1] + ": 1 file pulled, 0 skipped.")
    sys.exit(0)
sys.exit("fake adb: unknown command %r" % args)
'''

FAKE_BENCH = r'''#!{python}
import json, os, sys, time
with open(os.environ["FAKE_BENCH_ARGV"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(), "cwd": os.getcwd()}}) + "\n")
sys.stderr.write("STARTING!\n")
time.sleep(float(os.environ.get("FAKE_BENCH_SLEEP", "0")))
with open(os.environ["FAKE_BENCH_OUTPUT"], "rb") as f:
    sys.stdout.write(f.read().decode())
sys.exit(int(os.environ.get("FAKE_BENCH_RC", "0")))
'''

TASKSET = """#!/bin/sh
echo "$1" >> "$FAKE_TASKSET_LOG"
shift
exec "$@"
"""

GETPROP = """#!/bin/sh
case "$1" in
  ro.product.model) echo "Pixel 7";;
  ro.product.manufacturer) echo Google;;
  ro.board.platform) echo gs201;;
  ro.build.version.release) echo 14;;
  ro.product.cpu.abi) echo arm64-v8a;;
esac
"""


class FakeAdb:
    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.root = tmp / "device"
        (self.root / "data/local/tmp").mkdir(parents=True)
        host_bin, device_bin = tmp / "host_bin", tmp / "device_bin"
        host_bin.mkdir()
        device_bin.mkdir()
        self._script(host_bin / "adb", FAKE_ADB.format(python=sys.executable))
        self._script(device_bin / "taskset", TASKSET)
        self._script(device_bin / "getprop", GETPROP)
        self.binary = tmp / "android_aarch64_benchmark_model"
        self.binary.write_text(FAKE_BENCH.format(python=sys.executable))  # not executable: chmod is the runner's job
        self.adb_log, self.bench_log, self.taskset_log = tmp / "adb.log", tmp / "bench.log", tmp / "taskset.log"
        monkeypatch.setenv("PATH", f"{host_bin}{os.pathsep}{os.environ['PATH']}")
        env = {"FAKE_ADB_LOG": self.adb_log, "FAKE_ADB_ROOT": self.root, "FAKE_DEVICE_BIN": device_bin,
               "FAKE_BENCH_ARGV": self.bench_log, "FAKE_TASKSET_LOG": self.taskset_log,
               "FAKE_BENCH_OUTPUT": FIXTURES / "tflite_2020_android_adb.txt", "FAKE_ADB_DEVICES": f"{SERIAL}\tdevice"}
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        self.model = tmp / "model.tflite"
        self.model.write_bytes(b"TFL3 fake model")

    @staticmethod
    def _script(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.adb_log.read_text().splitlines()] if self.adb_log.exists() else []

    def bench_runs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.bench_log.read_text().splitlines()] if self.bench_log.exists() else []

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.root / "data/local/tmp").iterdir())


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeAdb:
    return FakeAdb(tmp_path, monkeypatch)


@pytest.fixture
def pixel() -> DeviceProfile:
    return load_profile("pixel-7")  # threads 2, xnnpack, taskset c0


def _run(fake: FakeAdb, profile: DeviceProfile, target: str = f"adb://{SERIAL}", **kw: object):
    args = {"runs": 50, "warmup": 3, "timeout_s": 20.0, "benchmark_binary": str(fake.binary)}
    args.update(kw)
    return run_device(fake.model, parse_target(target), profile, RunOptions(**args))  # type: ignore[arg-type]


def test_exact_commands_fingerprint_and_cleanup(fake: FakeAdb, pixel: DeviceProfile) -> None:
    stats = _run(fake, pixel)
    calls = fake.calls()
    assert calls[0] == ["devices"]
    assert all(c[:2] == ["-s", SERIAL] for c in calls[1:])
    shell = [c[3] for c in calls if c[2:3] == ["shell"]]
    remote = next(c[4] for c in calls if c[2:3] == ["push"]).rsplit("/", 1)[0]
    assert remote.startswith("/data/local/tmp/edgeport-") and len(remote.rsplit("-", 1)[1]) == 16
    assert [c[2:] for c in calls if c[2:3] == ["push"]] == [
        ["push", str(fake.model), f"{remote}/model.tflite"], ["push", str(fake.binary), f"{remote}/benchmark_model"]]
    assert any(s.startswith(f"{{ mkdir -m 700 {remote}; }} 2>&1;") for s in shell)
    assert any(s.startswith(f"{{ chmod 755 {remote}/benchmark_model; }} 2>&1;") for s in shell)
    assert any("taskset c0 ./benchmark_model" in s for s in shell)
    assert shell[-1].endswith(f"rm -rf {remote}")  # cleanup is the last command
    (run,) = fake.bench_runs()
    # the fake device lives under fake.root, so the fake adb rewrote /data/local/tmp in the command
    assert run["argv"] == [f"--graph={fake.root}{remote}/model.tflite", "--num_threads=2", "--num_runs=50", "--warmup_runs=3",
                           "--min_secs=0", "--warmup_min_secs=0", "--enable_op_profiling=true", "--use_xnnpack=true"]
    assert fake.taskset_log.read_text().split() == ["c0"]
    assert fake.leftovers() == []
    # the numbers are the fixture's, parsed on the host
    data = stats.to_dict()
    assert stats.source == f"adb://{SERIAL}" and stats.threads == 2
    assert data["p50_ms"] == pytest.approx(33.3902) and data["p50_is_avg"] is True and data["p90_ms"] is None
    assert data["runs"] == 50 and data["memory_footprint_mb"]["overall"] == 13.0117
    assert data["device"] == {"serial": SERIAL, "ro.product.model": "Pixel 7", "ro.product.manufacturer": "Google",
                              "ro.board.platform": "gs201", "ro.build.version.release": "14", "ro.product.cpu.abi": "arm64-v8a"}
    assert data["runtime"]["name"] == "benchmark_model" and len(data["runtime"]["sha256"]) == 64


def test_default_device_gpu_delegate_no_taskset(fake: FakeAdb, pixel: DeviceProfile) -> None:
    profile = replace(pixel, runtime=replace(pixel.runtime, delegate="gpu", taskset=None, threads=4))
    stats = _run(fake, profile, target="adb://", runs=7, warmup=0)
    calls = fake.calls()
    assert calls[0] == ["devices"] and all(c[:2] == ["-s", SERIAL] for c in calls[1:])  # resolved, then pinned
    (run,) = fake.bench_runs()
    assert run["argv"][1:4] == ["--num_threads=4", "--num_runs=7", "--warmup_runs=0"]
    assert run["argv"][-1] == "--use_gpu=true" and "--use_xnnpack=true" not in run["argv"]
    assert not fake.taskset_log.exists()
    assert not any("taskset" in c[3] for c in calls if c[2:3] == ["shell"])
    assert stats.source == "adb://" and stats.extra["device"]["serial"] == SERIAL


def test_benchmark_failure_reports_cause_and_still_cleans_up(fake: FakeAdb, pixel: DeviceProfile,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BENCH_OUTPUT", str(FIXTURES / "tflite_failed_old_binary.txt"))
    monkeypatch.setenv("FAKE_BENCH_RC", "1")
    with pytest.raises(DeviceError) as err:
        _run(fake, pixel)
    msg = str(err.value)
    assert "benchmark_model failed" in msg and "Didn't find op for builtin opcode 'FULLY_CONNECTED'" in msg
    assert "Benchmarking failed." in msg and "\n" not in msg
    assert err.value.exit_code == 3
    assert fake.calls()[-1][2:4][0] == "shell" and "rm -rf" in fake.calls()[-1][3]
    assert fake.leftovers() == []


def test_timeout_kills_the_benchmark_and_cleans_up(fake: FakeAdb, pixel: DeviceProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BENCH_SLEEP", "60")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="timed out"):
        _run(fake, pixel, timeout_s=2.5)
    assert time.monotonic() - t0 < 15
    assert fake.leftovers() == []
    (run,) = fake.bench_runs()
    pid = int(run["pid"])  # type: ignore[call-overload]
    for _ in range(50):  # cleanup sent SIGTERM through the pid file; give the kernel a moment
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"benchmark process {pid} still running after cleanup")


def test_missing_binary_on_device(fake: FakeAdb, pixel: DeviceProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_DROP", "benchmark_model")  # push "succeeds" but nothing lands (e.g. a full disk)
    with pytest.raises(DeviceError) as err:
        _run(fake, pixel)
    assert "making benchmark_model executable failed" in str(err.value)
    assert "No such file or directory" in str(err.value) and "pushed benchmark_model is missing" in str(err.value)
    assert fake.leftovers() == []


def test_binary_not_executable_on_device(fake: FakeAdb, pixel: DeviceProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_NOEXEC", "1")  # like a noexec mount: chmod has no effect
    with pytest.raises(DeviceError) as err:
        _run(fake, pixel)
    msg = str(err.value)
    assert "could not be started" in msg and "Permission denied" in msg and "noexec" in msg
    assert fake.leftovers() == []


@pytest.mark.parametrize(
    ("devices", "target", "expected"),
    [
        ("", "adb://", r"no Android device found"),
        (f"{SERIAL}\tunauthorized", "adb://", r"unauthorized — unlock the phone and accept the 'Allow USB debugging\?' RSA key prompt"),
        (f"{SERIAL}\toffline", f"adb://{SERIAL}", r"is offline — reconnect"),
        (f"{SERIAL}\tdevice\nemulator-5554\tdevice", "adb://", rf"more than one device is attached: {SERIAL} \(device\), emulator-5554"),
        ("emulator-5554\tdevice", f"adb://{SERIAL}", rf"device '{SERIAL}' is not attached \(attached: emulator-5554\)"),
    ],
)
def test_device_selection_errors(fake: FakeAdb, pixel: DeviceProfile, monkeypatch: pytest.MonkeyPatch,
                                 devices: str, target: str, expected: str) -> None:
    monkeypatch.setenv("FAKE_ADB_DEVICES", devices)
    with pytest.raises(DeviceError, match=expected):
        _run(fake, pixel, target=target)
    assert [c for c in fake.calls() if c != ["devices"]] == []  # nothing was sent to any device


def test_device_going_offline_mid_run(fake: FakeAdb, pixel: DeviceProfile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ADB_ERROR", "adb: device offline")
    with pytest.raises(DeviceError, match=f"device {SERIAL} is offline"):
        _run(fake, pixel)


def test_adb_not_installed(pixel: DeviceProfile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no adb anywhere
    model, binary = tmp_path / "m.tflite", tmp_path / "benchmark_model"
    model.write_bytes(b"x")
    binary.write_bytes(b"x")
    with pytest.raises(DeviceError, match="adb is not installed"):
        run_device(model, parse_target("adb://"), pixel, RunOptions(runs=1, warmup=0, timeout_s=5, benchmark_binary=str(binary)))


def test_missing_benchmark_binary_is_an_input_error(fake: FakeAdb, pixel: DeviceProfile) -> None:
    with pytest.raises(InputError, match="--benchmark-binary") as err:
        _run(fake, pixel, benchmark_binary=None)
    assert err.value.exit_code == 2 and fake.calls() == []
    with pytest.raises(InputError, match="does not exist"):
        _run(fake, pixel, benchmark_binary=str(fake.tmp / "nope"))


def test_edgetpu_profile_is_refused_over_adb(fake: FakeAdb) -> None:
    with pytest.raises(InputError, match="ssh"):
        _run(fake, load_profile("coral-usb"))


def test_parse_devices_skips_daemon_chatter() -> None:
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\nList of devices attached\n"
            "R58M\tdevice\nemulator-5554\toffline\n192.168.1.5:5555\tno permissions (user in plugdev group)\n\n")
    assert [(d.serial, d.state) for d in parse_devices(text)] == [
        ("R58M", "device"), ("emulator-5554", "offline"), ("192.168.1.5:5555", "no permissions (user in plugdev group)")]
