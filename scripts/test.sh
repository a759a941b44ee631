#!/usr/bin/env bash
# Set up the environment, then run the whole test suite (slow end-to-end conversions included).
# Extra arguments go to pytest (e.g. -m "not slow" for the quick unit tests only).
# As root, with debootstrap and qemu (qemu-aarch64-static, or qemu-aarch64 registered with binfmt_misc),
# it also builds (or reuses the cached) emulated arm64 board first, so that no test downloads: the board
# tests only reuse a built board and skip with the reason otherwise; a failed build does not stop the tests.
# The step is skipped for `-m "not slow"` (the board tests are slow) and with EDGEPORT_SKIP_BOARD_BUILD=1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
# mediapipe 0.10.21 in its own venv: the independent metadata reader that tests/test_ship_consumers.py uses.
"$ROOT/scripts/setup_metadata_reader.sh"
cd "$ROOT"
if [ "${EDGEPORT_SKIP_BOARD_BUILD:-0}" = "1" ]; then
  echo "test.sh: EDGEPORT_SKIP_BOARD_BUILD=1: the arm64 board is not built; its tests use a built one or skip" >&2
elif [[ " $* " == *"not slow"* ]]; then
  :  # the fast tests need no board
elif [ "$(id -u)" != "0" ]; then
  echo "test.sh: not root, so the arm64 board is not built; its tests use a built one or skip with the reason" >&2
elif ! command -v debootstrap >/dev/null 2>&1; then
  echo "test.sh: no debootstrap, so the arm64 board is not built; its tests use a built one or skip with the reason" >&2
elif ! command -v qemu-aarch64-static >/dev/null 2>&1 && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "test.sh: no qemu-aarch64 (qemu-user-static), so the arm64 board is not built; its tests use a built one or skip with the reason" >&2
else
  bash "$ROOT/scripts/arm64_board.sh" build \
    || echo "test.sh: the arm64 board could not be built; its tests will skip with the reason" >&2
fi
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
