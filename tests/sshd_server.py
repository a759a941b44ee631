"""A REAL OpenSSH sshd on 127.0.0.1, started as the current user, for the ssh runner's tests
(test_ssh_runner.py: timing; test_device_eval.py: validation on the device). Key auth only; the remote
TMPDIR is set per test (sshd AcceptEnv + ssh SetEnv), so a test sees only its own remote temp dir.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeport.runners.common import Target
from edgeport.runners.targets import parse_target

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = next((p for p in (Path("/usr/lib/openssh/sftp-server"), Path("/usr/libexec/openssh/sftp-server"),
                                Path("/usr/libexec/sftp-server")) if p.exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


@dataclass
class Sshd:
    port: int
    key: Path
    other_key: Path
    known_hosts: Path
    host_pub: str
    base: Path
    proc: subprocess.Popen[bytes]

    def options(self, *, key: Path | None = None, known_hosts: Path | None = None, remote_tmp: Path | None = None) -> list[str]:
        opts = ["-F", "none", "-i", str(key or self.key), "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if remote_tmp is not None:
            opts += ["-o", f"SetEnv=TMPDIR={remote_tmp}"]
        return opts

    @property
    def target(self) -> Target:
        return parse_target(f"ssh://root@127.0.0.1:{self.port}")


@contextmanager
def _start_sshd(base: Path, *, sftp: bool = True) -> Iterator[Sshd]:
    """A private sshd on 127.0.0.1:<free port>, key auth only, logging to base/sshd.log."""
    host_key, key, other = base / "host_ed25519", base / "client_ed25519", base / "other_ed25519"
    for path in (host_key, key, other):
        _keygen(path)
    (base / "authorized_keys").write_text(Path(f"{key}.pub").read_text())
    port = _free_port()
    config = base / "sshd_config"
    lines = ["ListenAddress 127.0.0.1", f"Port {port}", f"HostKey {host_key}", f"AuthorizedKeysFile {base}/authorized_keys",
             "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
             "PermitRootLogin prohibit-password", "UsePAM no", "StrictModes no", f"PidFile {base}/sshd.pid",
             "AcceptEnv TMPDIR", "MaxStartups 100", "LogLevel ERROR"]
    if sftp and SFTP_SERVER is not None:
        lines.append(f"Subsystem sftp {SFTP_SERVER}")
    config.write_text("\n".join(lines) + "\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege-separation dir sshd insists on
    log = (base / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(base / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        host_pub = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        known = base / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        yield Sshd(port, key, other, known, host_pub, base, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module", name="sshd")
def sshd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing (install openssh-server to run the real-sshd tests)")
    with _start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


