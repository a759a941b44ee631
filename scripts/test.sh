#!/usr/bin/env bash
# Set up the environment, then run the whole test suite (slow end-to-end conversions included).
# Extra arguments go to pytest (e.g. -m "not slow" for the quick unit tests only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
