"""edgeport's device-side validation runner: copied to the device and run there (runners/device_eval.py).

It runs the validation inputs through the model ON THE DEVICE and writes the outputs to one .npz for the
host to judge. Self-contained like remote_bench.py (stdlib + numpy + a TFLite interpreter, never edgeport),
but it ships with two siblings in the same private temp dir and imports them:
- `edgeport_tflite_exec.py` (runners/tflite_exec.py): the host's own per-sample loop, so the device resets
  variable tensors and feeds streaming state exactly as the host run does;
- `edgeport_bench.py` (runners/remote_bench.py): runtime discovery and the device fingerprint.
It prints exactly ONE JSON object on stdout. Written for Python >= 3.7.

Usage: python3 edgeport_eval.py REQUEST.json RESULT.npz [--flip-sign-output K]
`--flip-sign-output K` negates output K after the run. It is a planted fault for edgeport's own tests
(the host passes it only when EDGEPORT_TEST_DEVICE_FAULT=flip-sign is set), never for real use.
Exit codes: 0 ok, 3 a reported problem (JSON has "ok": false), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

SCHEMA = 1
INSTALL = "pip install ai-edge-litert numpy"  # the one line a board without a runtime needs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("request")
    parser.add_argument("result")
    parser.add_argument("--flip-sign-output", type=int, default=None, help="test-only planted fault: negate output K")
    args = parser.parse_args(argv)
    # As remote_bench.py: the real stdout carries only the one JSON line; library chatter goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - anything unexpected still becomes one JSON answer
        result = {"edgeport_remote_eval": SCHEMA, "ok": False, "error": "runner_error",
                  "message": f"{type(exc).__name__}: {exc}"}
    os.write(out_fd, (json.dumps(result, sort_keys=True) + "\n").encode("utf-8"))
    os.close(out_fd)
    return 0 if result.get("ok") else 3


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    # The siblings sit beside this file; an isolated interpreter (-I) does not put its dir on sys.path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import edgeport_bench as bench  # noqa: PLC0415 - the sibling file exists only on the device

    errors: list[str] = []
    try:
        import numpy  # noqa: F401,PLC0415
    except ImportError as exc:
        errors.append(f"numpy: {exc}")
        runtime = None
    else:
        runtime = bench.load_runtime(errors)
    if runtime is None:
        sys.stderr.write(f"edgeport: no TFLite runtime or numpy for {sys.executable}: {INSTALL}\n")
        return {"edgeport_remote_eval": SCHEMA, "ok": False, "error": "no_runtime", "install": INSTALL,
                "import_errors": errors, "python": sys.executable, "device": bench.fingerprint()}
    _, _, name, version = runtime
    import edgeport_tflite_exec as tflite_exec  # noqa: PLC0415

    try:
        tflite_exec.main([args.request, args.result])
    except Exception as exc:  # noqa: BLE001 - the runtime's own words for a model it cannot load or run
        return {"edgeport_remote_eval": SCHEMA, "ok": False, "error": "model_failed", "message": f"{type(exc).__name__}: {exc}",
                "runtime": {"name": name, "version": version}, "device": bench.fingerprint()}
    if args.flip_sign_output is not None:
        flip_sign(args.result, args.flip_sign_output, tflite_exec.ordered_output_keys)
    return {"edgeport_remote_eval": SCHEMA, "ok": True, "runtime": {"name": name, "version": version},
            "device": bench.fingerprint(), "seconds": round(time.monotonic() - started, 3),
            "result_bytes": os.path.getsize(args.result)}


def flip_sign(path: str, index: int, order: Any) -> None:
    """The planted fault: output `index` (in the model's output order) comes back negated."""
    import numpy as np  # noqa: PLC0415

    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    keys = order([k[len("out::"):] for k in arrays if k.startswith("out::")])
    key = "out::" + keys[min(index, len(keys) - 1)]
    arrays[key] = -arrays[key]
    tmp = path + ".flip.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
