#!/usr/bin/env bash
# Quick start: set up the environment, then convert the embedded default model (a MobileNet-style
# CNN trained on the shipped UCI digits data) to int8 TFLite for a Raspberry Pi 4, validated on the
# held-out digits split. Extra arguments go to `edgeport convert` (e.g. --quant fp16, --json).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/edgeport" convert edgeport/zoo/digits_net.pt \
  --model-class edgeport.zoo.digits_net:DigitsNet \
  --profile raspberry-pi-4 --calib builtin:digits --val builtin:digits-val \
  --output out/demo "$@"
