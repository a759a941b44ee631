"""A real local Ray cluster for tests: `ray start --head` on 127.0.0.1 with its own temp dir and ports.

`ray stop` would stop every Ray process of this user (other people's clusters too), so the cluster
is started in a new session and stopped by signalling that process group only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextmanager
def local_cluster(num_cpus: int = 2) -> Iterator[str]:
    """Yields the address for ray.init / `edgeport sweep --ray`."""
    tmp = tempfile.mkdtemp(prefix="ray-ep-", dir="/tmp")  # short: Ray's unix socket paths must stay < 108 bytes
    ports = _free_ports(9)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    # Every port the head opens is chosen here, so a cluster someone else runs on this machine is not touched.
    cmd = [ray_bin, "start", "--head", "--block", "--num-cpus", str(num_cpus), "--port", str(ports[0]),
           "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", tmp,
           "--ray-client-server-port", str(ports[1]), "--node-manager-port", str(ports[2]),
           "--object-manager-port", str(ports[3]), "--metrics-export-port", str(ports[4]),
           "--dashboard-agent-listen-port", str(ports[5]), "--dashboard-agent-grpc-port", str(ports[6]),
           "--runtime-env-agent-port", str(ports[7]), "--dashboard-port", str(ports[8]), "--min-worker-port", "0", "--max-worker-port", "0"]
    log = open(Path(tmp, "ray-start.log"), "w")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{ports[0]}"
    try:
        deadline = time.time() + 180  # nice'd machine: the head can take a while
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {Path(tmp, 'ray-start.log').read_text()[-2000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ports[0])) == 0 and "Ray runtime started" in Path(tmp, "ray-start.log").read_text():
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError("ray start did not come up within 180 s")
        yield address
    finally:
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        _stop(proc.pid, tmp)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _ours(tmp: str) -> list:
    """Processes of this cluster: Ray workers move to their own process groups, but all of them
    inherit RAY_TMPDIR, which is private to this cluster."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.environ().get("RAY_TMPDIR") == tmp:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _stop(pgid: int, tmp: str) -> None:
    """TERM, then KILL, our `ray start` group and every process carrying our RAY_TMPDIR; nothing else."""
    import psutil

    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        procs = _ours(tmp)
        with suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        for p in procs:
            with suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        psutil.wait_procs(procs, timeout=wait_s)
        if not _ours(tmp):
            return
