"""`edgeport sweep PLAN.toml`: models x profiles x modes, each a full convert, on a local pool or Ray.

Kept import-light: `python -m edgeport.sweep.cell` starts from here in every convert process.

Owns: the subcommand's parser and entry point (here), PLAN.toml -> cells (plan), the driver that
skips finished cells (driver), where cells run: a local pool or Ray (executors), one cell as a full
convert in its own process (cell), and the results table (table).
May import: edgeport.errors, edgeport.types, edgeport.modes, edgeport.profiles, edgeport.convert_options,
edgeport.pipeline, edgeport.data.calibration, edgeport.report
A sweep is a command made of converts: a plan's keys are convert's options (convert_options), a cell
runs pipeline.run_convert, plan checks builtin data names (data.calibration), and table reuses the
report's charts, CSS and atomic writes (report).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sweep", parents=parents,
                              help="convert models x profiles x modes from a PLAN.toml; one results table; resumable")
    p.add_argument("plan", type=Path, help="PLAN.toml with [[models]], profiles and modes")
    p.add_argument("--output", "-o", type=Path, help="results folder (default: the plan's sweep.output or edgeport-sweep)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run cells as Ray tasks on an existing cluster")
    p.add_argument("--workers", type=int, help="local pool size (default: what the cores and the memory allow)")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from edgeport.errors import InputError
    from edgeport.sweep.driver import run_sweep, summary_lines
    from edgeport.types import plain

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers} must be at least 1", hint="e.g. --workers 2")
    if args.ray is not None and args.workers is not None:
        raise InputError("--workers sizes the local pool; with --ray the cluster decides", hint="drop one of them")

    def log(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr, flush=True)

    result = run_sweep(args.plan, output=args.output, ray=args.ray, workers=args.workers, log=log)
    if args.json:
        print(json.dumps(plain({**result.data, "exit_code": result.exit_code}), indent=2))
    else:
        print("\n".join(summary_lines(result)))
    return result.exit_code
