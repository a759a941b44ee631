#!/usr/bin/env bash
# The emulated arm64 board (Raspberry Pi 4 class, Debian bookworm under qemu-user) for device tests:
#   scripts/arm64_board.sh build   # as root; ~5 min the first time, then reuses the cached root
#   scripts/arm64_board.sh start   # prints the ssh target and the --ssh-option values
#   scripts/arm64_board.sh stop | status [--json]
# The work is in edgeport/runners/board_build.py (stdlib only, so this runs before the venv exists).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
cd "$ROOT"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m edgeport.runners.board_build "$@"
