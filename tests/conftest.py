from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from arm64_board import arm64_board  # noqa: E402,F401  (the session fixture, for any test file)

from edgeport.runners.board import board_dir  # noqa: E402

# The host profile's simulator comes from a fit on the machine in use (a minute, once per machine).
# Tests that are not about that fit use the documented fallback, so no test pays the minute by
# accident or depends on which test ran first; tests of the fit itself set their own cache and mode.
# Never the user's ~/.cache: a test must not leave a fit behind. Subprocesses inherit both.
os.environ["EDGEPORT_HOST_FIT"] = "fallback"
# The arm64 board (~1 GB, minutes to build) is the one exception: it stays in the user's cache
# folder, resolved before the override below, so every session reuses it.
os.environ.setdefault("EDGEPORT_BOARD_DIR", str(board_dir()))
os.environ["EDGEPORT_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgeport-test-cache-")


@pytest.fixture
def tests_dir() -> Path:
    return TESTS


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def without_rewrites(monkeypatch):
    """Leave named graph rewrites (edgeport/export/rewrites) out, for a test whose subject is the very
    failure a rewrite removes (an int8 DIV that aborts, an op AEQ cannot quantize, the Flex retry)."""
    from edgeport.export import rewrites

    def drop(*names: str) -> None:
        unknown = set(names) - {name for name, _ in rewrites.REWRITES}
        assert not unknown, f"no such rewrite: {unknown}"
        monkeypatch.setattr(rewrites, "REWRITES", [(n, f) for n, f in rewrites.REWRITES if n not in names])

    return drop
