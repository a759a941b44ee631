"""Session fixture `arm64_board`: the emulated arm64 board (Debian bookworm under qemu-user, Pi 4's
Cortex-A72), reused from the cache and started once per test session.

    def test_x(arm64_board):
        edgeport bench M --target {arm64_board.target} + one --ssh-option per arm64_board.ssh_options

The fixture never builds the board: building downloads Debian and PyPI packages, which a test session
must not do. `scripts/test.sh` (as root) and `.ci/run` build it before pytest starts, or
`sudo scripts/arm64_board.sh build` by hand. Without a built board, or where it cannot start (not
root, no binfmt_misc), the board tests skip with the reason. Sessions running at the same time share
one board (each holds a lease); the last one to finish stops it, unless it was started by hand
(`scripts/arm64_board.sh start`), which leaves it up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgeport.runners import board_build
from edgeport.runners.board import built_info, paths


@dataclass(frozen=True)
class Arm64Board:
    target: str  # "ssh://root@127.0.0.1:PORT"
    ssh_options: list[str]  # each one `--ssh-option` value ("-iKEY", "-oUserKnownHostsFile=...", ...)
    dir: Path  # the board folder (root/, board.json, the client key)
    versions: dict[str, Any] = field(default_factory=dict)  # python, machine, ai-edge-litert, numpy on the board

    @property
    def cli_options(self) -> list[str]:
        """The ssh options as edgeport arguments: ["--ssh-option=-iKEY", ...]."""
        return [f"--ssh-option={opt}" for opt in self.ssh_options]

    @property
    def ssh_argv(self) -> list[str]:
        """`ssh` with the board's port, user and options; append the remote command."""
        port = self.target.rsplit(":", 1)[1]
        return ["ssh", "-F", "none", *self.ssh_options, "-oBatchMode=yes", "-p", port, "root@127.0.0.1"]


@contextmanager
def board_session() -> Iterator[Arm64Board]:
    """The built board, started or shared, for the duration; pytest.skip where it is not built or cannot start."""
    p = paths()
    info = built_info(p)
    if not info:
        pytest.skip(f"arm64 board not built in {p.base}: run `sudo scripts/arm64_board.sh build` "
                    "(scripts/test.sh does it when run as root)")
    try:
        st, lease = board_build.acquire(p)
    except board_build.BoardUnavailable as exc:
        pytest.skip(f"arm64 board unavailable: {exc}")
    assert st.target is not None
    try:
        yield Arm64Board(st.target, list(st.ssh_options), p.base, dict(info.get("versions", {})))
    finally:
        board_build.release(p, lease)


@pytest.fixture(scope="session")
def arm64_board() -> Iterator[Arm64Board]:
    with board_session() as board:
        yield board
