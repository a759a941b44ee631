from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))


@pytest.fixture
def tests_dir() -> Path:
    return TESTS


@pytest.fixture
def repo_root() -> Path:
    return REPO
