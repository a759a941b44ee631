#!/usr/bin/env bash
# Build the separate venv that holds mediapipe 0.10.21, whose MetadataDisplayer reads standard TFLite
# metadata back in tests/test_ship_consumers.py. It cannot live in .venv: 0.10.21 needs numpy<2 and
# protobuf<5, while the project pins numpy 2.4 and protobuf 7. Idempotent; run by scripts/test.sh, so
# tests never download anything themselves. Installs only from the package index, at set-up time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGEPORT_METADATA_READER_VENV:-$ROOT/.venv-metadata-reader}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
WANT="mediapipe==0.10.21 numpy==1.26.4 protobuf==4.25.9"
STAMP="$VENV/.edgeport-reader-installed"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # shellcheck disable=SC2086 # WANT is a list of requirement specifiers
  "$VENV/bin/python" -m pip install --quiet $WANT
  "$VENV/bin/python" -c "from mediapipe.tasks.python.metadata import metadata"  # fail set-up, not the test
  echo "$WANT" > "$STAMP"
fi
