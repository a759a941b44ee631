"""`edgeport` command line: main(argv) -> exit code (0 passed, 1 over budget, 2 bad input, 3 runtime)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeport import convert_options, options, progress
from edgeport.errors import EdgeportError, InputError, cause_line
from edgeport.types import plain


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message, hint=f"see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the machine-readable result on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common.add_argument("--quiet", "-q", action="store_true",
                        help="no progress on stderr (errors are still printed); stdout keeps the result")
    parser = _Parser(prog="edgeport", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    conv = sub.add_parser("convert", parents=[common], help="checkpoint -> quantized, validated TFLite with a verdict")
    convert_options.add_arguments(conv)  # one table with the sweep plan's keys (edgeport/convert_options.py)

    bench = sub.add_parser("bench", parents=[common],
                           help="time a .tflite on the host, simulated from the profile, or on devices over adb/ssh",
                           description="Time a .tflite on one or more targets at once: this host (local), the profile's "
                                       "simulator (sim), an Android phone (adb://SERIAL) or a Linux board (ssh://user@host).")
    bench.add_argument("model", type=Path)
    bench.add_argument("--profile", default="host")
    bench.add_argument("--target", action="append", default=[], type=options.target,
                       help="local (default), sim, adb://SERIAL, ssh://[user@]host[:port]; repeat to run several at once")
    bench.add_argument("--runs", type=options.runs, default=100)
    bench.add_argument("--timeout", type=options.timeout, help="seconds per device run (default: the profile's)")
    bench.add_argument("--benchmark-binary", help="host path of TFLite's benchmark_model for adb targets")
    bench.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                       help="extra ssh/scp option for ssh targets, e.g. --ssh-option=-oProxyJump=gw (host keys stay checked)")

    chk = sub.add_parser("check", parents=[common], help="run a converted .tflite's validation data ON a device and judge "
                         "it against this host's run, the float reference and the labels (exit 0 pass / 1 fail)")
    chk.add_argument("model", type=Path)
    chk.add_argument("--val", required=True, help="validation data: .npz, .npy, image folder or builtin:NAME")
    chk.add_argument("--target", required=True, type=options.target, help="ssh://[user@]host[:port] or adb://SERIAL")
    chk.add_argument("--profile", default="host", help="profile for threads, remote_python, timeout and the budgets")
    chk.add_argument("--reference", type=Path, metavar="REPORT_OR_NPZ",
                     help="the convert's report.json (input layout, float label accuracy) or an .npz of float outputs per sample")
    chk.add_argument("--max-samples", type=options.max_samples, default=1000, help="validation samples read from --val")
    chk.add_argument("--preprocess", action="append", default=[], metavar="KEY=VALUE", help="image-folder preprocessing")
    chk.add_argument("--timeout", type=options.timeout, help="seconds for the device run (default: the profile's)")
    chk.add_argument("--eval-binary", help="adb without Python: host path of an evaluation tool for the device (see README)")
    chk.add_argument("--ssh-option", action="append", default=[], metavar="OPT", help="extra ssh/scp option for ssh targets")

    insp = sub.add_parser("inspect", parents=[common], help="inputs, outputs, ops and dtypes of a .tflite")
    insp.add_argument("model", type=Path)
    insp.add_argument("--profile")

    ship = sub.add_parser("ship", parents=[common], help="put a converted model into an app folder with TFLite metadata, "
                          "labels and a manifest; or --check DIR")
    ship.add_argument("result", nargs="?", type=Path, help="convert output folder, its report.json, or the .tflite")
    ship.add_argument("--to", type=Path, metavar="DIR", help="app folder: Android src/main/assets, an iOS bundle folder, a Pi app folder")
    ship.add_argument("--check", type=Path, metavar="DIR", help="verify every model shipped into DIR against its manifest (exit 1 on drift)")
    ship.add_argument("--labels", type=Path, metavar="FILE", help="labels, one per line (default: the image-folder class names)")
    ship.add_argument("--mean", metavar="M[,M,M]", help="input normalization in pixel units (0..255), overrides the recorded one")
    ship.add_argument("--std", metavar="S[,S,S]", help="with --mean: apps feed (pixel - mean) / std")
    ship.add_argument("--name", help="asset file name stem in DIR (default: the model file's stem)")
    ship.add_argument("--model-name", help="name in the metadata (default: the checkpoint's stem)")
    ship.add_argument("--model-version", help="version in the metadata (default: sha256 prefix of the converted model)")
    ship.add_argument("--description", help="description in the metadata (default: mode, profile and accuracy)")
    ship.add_argument("--force", action="store_true", help="ship a model whose verdict failed (recorded in the manifest)")
    ship.add_argument("--replace", action="store_true", help="overwrite a different model of the same name in DIR")

    from edgeport.compress.arguments import add_parser as add_compress_parser

    add_compress_parser(sub, [common])

    from edgeport import sweep

    sweep.add_parser(sub, [common])

    prof = sub.add_parser("profiles", parents=[common],
                          help="list or show device profiles; fit-host measures this machine for the 'host' profile")
    prof.add_argument("action", nargs="?", default="list", choices=("list", "show", "fit-host"))
    prof.add_argument("name", nargs="?")
    prof.add_argument("--threads", type=options.threads,
                      help="fit-host: thread count to fit besides 1 (default: the host profile's)")

    sub.add_parser("doctor", parents=[common],
                   help="check the installation: Python packages vs the verified set, adb, ssh, edgetpu_compiler, profiles "
                        "(exit 1 when something needed is missing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    want_json = "--json" in argv
    progress.configure(quiet="--quiet" in argv or "-q" in argv)
    try:
        with _quiet_libraries(debug):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as exc:  # --help / --version: argparse printed what was asked
                return int(exc.code or 0)
            if not args.command:
                raise InputError("no command given",
                                 hint="use one of: convert, bench, inspect, compress, ship, sweep, profiles, doctor (see --help)")
            handler = {"convert": _convert, "bench": _bench, "inspect": _inspect, "profiles": _profiles,
                       "compress": _compress, "ship": _ship, "doctor": _doctor,
                       "sweep": _sweep, "check": _check}[args.command]
            return handler(args)
    except EdgeportError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.one_line(), exc.exit_code, want_json)
        return exc.exit_code
    except KeyboardInterrupt:
        _fail("interrupted; no partial output was written", 130, want_json)
        return 130
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {cause_line(exc)} "
              "(rerun with --debug for the traceback and report it)", 3, want_json)
        return 3


@contextmanager
def _quiet_libraries(debug: bool) -> Iterator[None]:
    """Without --debug, libraries' logged warnings and Python warnings stay off stderr: torch and
    TensorFlow print multi-line warnings (with tracebacks) on paths that end in a clean one-line
    error, and the contract is one line. What matters reaches the user as that line or as a note
    in report.json; --debug shows everything."""
    if debug:
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _fail(message: str, code: int, want_json: bool) -> None:
    print(f"edgeport: error: {message}", file=sys.stderr)
    if want_json:
        print(json.dumps({"error": message, "exit_code": code}))


def _emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        print(json.dumps(plain(data), indent=2))
    else:
        print("\n".join(lines))


def _convert(args: argparse.Namespace) -> int:
    from edgeport.convert_options import request_from_args
    from edgeport.pipeline import run_convert

    report = run_convert(request_from_args(args))
    _emit(args, report.data, [*report.lines, f"  report     {report.path}"])
    return report.exit_code


def _bench(args: argparse.Namespace) -> int:
    from edgeport.bench import bench
    from edgeport.runners.common import RunOptions

    opts = RunOptions(runs=args.runs, timeout_s=args.timeout, benchmark_binary=args.benchmark_binary,
                      ssh_options=tuple(args.ssh_option))
    result = bench(args.model, args.profile, targets=args.target, opts=opts)
    _emit(args, result, result.pop("_lines", []))
    failed = [(name, r) for name, r in result["results"].items() if "error" in r]
    if failed:  # the table went to stdout; the exit code still owes one line on stderr saying why
        name, first = max(failed, key=lambda item: item[1]["exit_code"])
        more = f" (and {len(failed) - 1} more target(s) failed)" if len(failed) > 1 else ""
        print(f"edgeport: error: {name}: {first['error']}{more}", file=sys.stderr)
    return int(result["exit_code"])


def _check(args: argparse.Namespace) -> int:
    from edgeport.check import CheckRequest, lines, run_check
    from edgeport.runners.common import RunOptions

    pre = dict(item.partition("=")[::2] for item in args.preprocess)
    req = CheckRequest(model=args.model, val=args.val, target=args.target, profile=args.profile, reference=args.reference,
                       opts=RunOptions(timeout_s=args.timeout, ssh_options=tuple(args.ssh_option)),
                       eval_binary=args.eval_binary, max_samples=args.max_samples, preprocessing=pre or None)
    result = run_check(req)
    _emit(args, result, lines(result))
    return int(result["exit_code"])


def _inspect(args: argparse.Namespace) -> int:
    from edgeport.tflite.reader import inspect_model, summary

    data = inspect_model(args.model)
    lines = summary(data)
    if args.profile:
        from edgeport.latency.edgetpu import edgetpu_report
        from edgeport.latency.host_fit import resolve
        from edgeport.latency.simulator import simulate
        from edgeport.profiles import load_profile
        from edgeport.report.summary import fit_label

        prof = resolve(load_profile(args.profile), log=progress.note)
        tpu = edgetpu_report(args.model, data) if prof.runtime.delegate == "edgetpu" else None
        sim = simulate(data, prof, edgetpu_report=tpu) if tpu is not None else simulate(data, prof)
        data["simulated"] = sim.to_dict()
        data["simulated"]["fit"] = prof.fit
        lines.append(f"  simulated p50 on {prof.name}: {sim.p50_ms:.3f} ms ({sim.threads} threads){fit_label(prof.fit)}")
        if tpu is not None:
            data["edgetpu"] = tpu.to_dict()
            first = f"; first op on the CPU: {tpu.first_unsupported}" if tpu.first_unsupported else ""
            lines.append(f"  Edge TPU: {tpu.ops_on_tpu} ops on the TPU, {tpu.ops_on_cpu} on the CPU "
                         f"({tpu.share_on_tpu:.0%}){first}; parameters {'fit' if tpu.fits_sram else 'do NOT fit'} in the 8 MB cache")
    _emit(args, data, lines)
    return 0


def _compress(args: argparse.Namespace) -> int:
    from edgeport.compress import command as compress_command

    return compress_command.run(args)


def _sweep(args: argparse.Namespace) -> int:
    from edgeport import sweep

    return sweep.run(args)


def _ship(args: argparse.Namespace) -> int:
    from edgeport.ship import bundle as ship
    from edgeport.ship import check as ship_check

    if args.check is not None:
        if args.result is not None or args.to is not None:
            raise InputError("--check DIR takes no RESULT or --to", hint="run 'edgeport ship --check DIR' on its own")
        result = ship_check.check(args.check)
        _emit(args, result, ship_check.check_lines(result))
        return int(result["exit_code"])
    if args.result is None or args.to is None:
        raise InputError("ship needs RESULT and --to DIR", hint="e.g. edgeport ship out/demo --to app/src/main/assets")
    req = ship.ShipRequest(
        result=args.result, to=args.to, labels=args.labels, mean=_floats("--mean", args.mean), std=_floats("--std", args.std),
        name=args.name, model_name=args.model_name, version=args.model_version, description=args.description,
        force=args.force, replace=args.replace)
    result = ship.ship(req)
    _emit(args, result, ship.ship_lines(result))
    return int(result["exit_code"])


def _floats(flag: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{flag} {text!r} is not a number list", hint=f"e.g. {flag} 127.5 or {flag} 123.7,116.3,103.5") from None


def _profiles(args: argparse.Namespace) -> int:
    from edgeport.profiles import list_profiles, load_profile

    if args.action == "fit-host":
        return _fit_host(args)
    if args.action == "show":
        if not args.name:
            raise InputError("'profiles show' needs a profile name", hint="e.g. edgeport profiles show raspberry-pi-4")
        from edgeport.latency.host_fit import resolve

        prof = resolve(load_profile(args.name), may_fit=False)  # showing a profile never spends a minute fitting
        data = prof.to_dict()
        lines = [f"{k}: {json.dumps(plain(v))}" for k, v in data.items()]
        _emit(args, data, lines)
        return 0
    profiles = list_profiles()
    data = [{"name": p.name, "description": p.description, "default_quant": p.runtime.default_quant,
             "path": str(p.path)} for p in profiles]
    _emit(args, data, [f"{p['name']:<18} {p['default_quant']:<8} {p['description']}" for p in data])
    return 0


def _fit_host(args: argparse.Namespace) -> int:
    """Measure this machine for profiles with host_fit = true, and cache the fit (replacing an older one)."""
    from edgeport.latency.host_fit import BUSY_HINT, BUSY_SHARE, FREE, fit_host
    from edgeport.profiles import load_profile

    threads = args.threads if args.threads is not None else load_profile(args.name or "host").runtime.threads
    fit = fit_host(threads, log=progress.note)
    data = {**fit.summary(cached=False), "params": fit.params,
            "samples": [vars(s) for s in fit.samples]}
    lines = [f"host fit {fit.key}: {fit.machine['cpu_model']} ({fit.machine['cores']} cores), "
             f"ISA {' '.join(fit.machine['isa'])}, int8 dot product: {fit.machine['int8_dot']}",
             f"  {len(fit.samples)} timings of the fit set at 1 and {fit.threads} thread(s) in {fit.seconds:.0f} s; "
             f"{fit.within():.0%} within ±20% of the fitted model"
             + (f" ({BUSY_HINT})" if fit.within() < BUSY_SHARE else ""),
             *[f"  {k:<26} {fit.params[k]:.4g}" for k in FREE],
             f"  cached in {fit.path}; the 'host' profile uses it from now on"]
    _emit(args, data, lines)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from edgeport.doctor import diagnose, summary

    data = diagnose()
    _emit(args, data, summary(data))
    return int(data["exit_code"])


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
