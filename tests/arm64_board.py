"""Session fixture `arm64_board`: the emulated arm64 board (Debian bookworm under qemu-user, Pi 4's
Cortex-A72), built or reused from the cache and started once per test session.

    def test_x(arm64_board):
        edgeport bench M --target {arm64_board.target} + one --ssh-option per arm64_board.ssh_options

It skips, with the reason, where the board cannot be built: not root, no binfmt_misc, no
apt-get/debootstrap, or no network at build time and nothing cached. Sessions running at the same
time share one board (each holds a lease); the last one to finish stops it, unless it was started
by hand (`scripts/arm64_board.sh start`), which leaves it up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgeport.runners import board_build
from edgeport.runners.board import paths


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
    """The board built or reused, started or shared, for the duration; pytest.skip where it cannot be."""
    p = paths()
    try:
        info = board_build.build(p)
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
