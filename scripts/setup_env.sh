#!/usr/bin/env bash
# Create (or refresh) the project virtualenv with the versions verified together in constraints.txt.
# Idempotent: reinstalls only when constraints.txt or pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGEPORT_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "edgeport needs Python 3.11"' \
  || { echo "setup: Python 3.11 is required (found $("$PY" --version 2>&1))" >&2; exit 2; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.edgeport-installed"
WANT="$(cat "$ROOT/constraints.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # torch first and alone, pinned to the CPU build that pip finds on this machine's disk; an
  # unpinned torch would pull several GB of CUDA wheels.
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" "torch==2.13.0"
  "$VENV/bin/python" -m pip install --quiet -c "$ROOT/constraints.txt" -e "$ROOT[test,ship,sweep,litert,aeq]"
  echo "$WANT" > "$STAMP"
fi
# Headless Chromium renders report.html in the browser test (tests/test_report_browser.py). Only
# installed as root with apt-get, and never a reason to fail the setup: the test skips with the reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null 2>&1 || true  # a fresh container has no package lists
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || echo "setup: apt-get install chromium failed; the browser test will skip" >&2
fi
