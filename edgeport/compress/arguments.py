"""`edgeport compress` arguments, apart from the passes so that building the CLI parser does not
import torch (every command paid ~1.5 s for it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeport import options


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser("compress", parents=parents, help="prune / low-rank / cluster / distill a torch model before convert")
    p.add_argument("checkpoint", type=Path, help="model to compress (state_dict + --model-class, TorchScript, or pickled module)")
    p.add_argument("--recipe", required=True, type=Path, help="TOML file with [[pass]] tables")
    p.add_argument("--data", required=True, help="training/calibration data: .npz, .npy, image folder or builtin:NAME")
    p.add_argument("--val", help="held-out data with labels for accuracy (default: 30%% of --data is held out)")
    p.add_argument("--model-class", metavar="module:Class", help="class for a state_dict checkpoint")
    p.add_argument("--model-kwargs", metavar="JSON", help="constructor kwargs for --model-class")
    p.add_argument("--trust-pickle", action="store_true", help="allow unpickling a whole module (runs code from the file)")
    p.add_argument("--input-shape", action="append", default=[], type=options.input_shape, metavar="[NAME=]1x3x224x224")
    p.add_argument("--teacher", type=Path, help="teacher for distill passes (default: the checkpoint as loaded)")
    p.add_argument("--teacher-class", metavar="module:Class", help="class for a state_dict --teacher (default: --model-class)")
    p.add_argument("--teacher-kwargs", metavar="JSON")
    p.add_argument("--student", metavar="module:Class", help="start from a fresh model of this class; the checkpoint teaches it")
    p.add_argument("--student-kwargs", metavar="JSON")
    p.add_argument("--output", "-o", type=Path, required=True, help="output .ts file, or a directory")
    p.add_argument("--latency-profile", default="host", help="profile for the int8 conversions that time each step")
    p.add_argument("--latency-runs", type=options.latency_runs, default=200, help="timed runs per step (tiny models need many)")
    p.add_argument("--no-latency", action="store_true", help="skip the int8 TFLite conversions (no latency, faster)")
    p.add_argument("--max-samples", type=options.max_samples, help="use only the first N samples of --data")
    return p
