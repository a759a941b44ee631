#!/usr/bin/env bash
# Set up the environment, then run the whole test suite (slow end-to-end conversions included).
# Extra arguments go to pytest (e.g. -m "not slow" for the quick unit tests only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
# mediapipe 0.10.21 in its own venv: the independent metadata reader that tests/test_ship_consumers.py uses.
"$ROOT/scripts/setup_metadata_reader.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
