"""Progress of long stages on stderr, so a ten-minute run never looks hung.

A live bar (rich) when stderr is a terminal, plain timestamped lines otherwise (CI logs, pipes), and
nothing with `--quiet`. stdout is never touched: with `--json` it carries the JSON alone.

Work that runs in a child process (onnx2tf, the mixed search) reports through a small status file
that the child rewrites atomically (`write_status`) and the parent polls while it waits (`follow`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

HEARTBEAT_S = 30.0  # plain mode: a "still running" line when a stage has said nothing this long
# plain mode: a stage that ends (or fails) sooner prints nothing, so quick runs and input errors stay
# quiet (bad input is one error line) and only stages worth waiting for are announced
ANNOUNCE_AFTER_S = 2.0
POLL_S = 0.5

_config: dict[str, Any] = {"mode": "off", "stream": None}


def configure(*, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None) -> str:
    """Called once per command by the CLI. The Python API stays silent unless it calls this."""
    stream = stream or sys.stderr
    if quiet:
        mode = "off"
    elif live if live is not None else _is_tty(stream):
        mode = "live"
    else:
        mode = "plain"
    _config.update(mode=mode, stream=stream)
    return mode


def current_mode() -> str:
    return str(_config["mode"])


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Stage:
    """One long stage. `update` says where it is: a detail text and, when countable, done/total."""

    def __init__(self, name: str, total: int | None, detail: str) -> None:
        self.name, self.total, self.detail = name, total, detail
        self.done = 0
        self.started = time.monotonic()
        self._last_print = self.started
        self._last_plain = ""
        self._min_interval = 0.0
        self._live: Any = None
        self._task: Any = None
        self._announced = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------
    def update(self, detail: str | None = None, *, done: int | None = None, total: int | None = None,
               throttle_s: float = 0.0) -> None:
        """throttle_s: in plain mode, skip this line if the last one is younger (per-sample counters)."""
        if detail is not None:
            self.detail = detail
        if total is not None:
            self.total = total
        if done is not None:
            self.done = done
        mode = current_mode()
        if mode == "live" and self._live is not None:
            self._live.update(self._task, description=self._label(), completed=self.done, total=self.total,
                              detail=self.detail, count=self._count())
        elif mode == "plain":
            with self._lock:
                if not self._announced:
                    return  # the deferred announcement prints the state as it is by then
                line = self._plain_text()
                if line == self._last_plain:
                    return
                if throttle_s and time.monotonic() - self._last_print < throttle_s and self.done != self.total:
                    return
                self._emit(line)

    def tick(self) -> None:
        """Called while waiting: in plain mode, a line now and then proves the run is alive."""
        if current_mode() == "plain" and self._announced and time.monotonic() - self._last_print >= HEARTBEAT_S:
            with self._lock:
                self._emit(f"{self._plain_text()} (still running, {_duration(time.monotonic() - self.started)})")

    def _announce(self) -> None:
        with self._lock:
            if not self._announced:
                self._announced = True
                self._emit(self._plain_text())

    # -- internals ----------------------------------------------------------------------------
    def _label(self) -> str:
        return self.name

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else ""

    def _plain_text(self) -> str:
        count = f" {self._count()}" if self.total else ""
        return f"{self.name}{count}" + (f": {self.detail}" if self.detail else "")

    def _emit(self, text: str) -> None:
        self._last_print = time.monotonic()
        self._last_plain = text.split(" (still running")[0]
        _line(text)

    def _start(self) -> None:
        mode = current_mode()
        if mode == "live":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=_config["stream"], stderr=True)
            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                                  TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                  TextColumn("{task.fields[detail]}"),
                                  console=console, transient=False)
            self._live.start()
            self._task = self._live.add_task(self._label(), total=self.total, completed=0, detail=self.detail,
                                             count=self._count())
        elif mode == "plain":
            self._timer = threading.Timer(ANNOUNCE_AFTER_S, self._announce)
            self._timer.daemon = True
            self._timer.start()

    def _finish(self, ok: bool) -> None:
        elapsed = _duration(time.monotonic() - self.started)
        if self._live is not None:
            if ok:
                total = self.total or 1
                self._live.update(self._task, completed=total, total=total, detail=f"done in {elapsed}",
                                  count=f"{total}/{total}" if self.total else "")
            else:
                self._live.update(self._task, detail="stopped")
            self._live.stop()
            self._live = None
        elif self._timer is not None:
            self._timer.cancel()
            with self._lock:
                if ok and self._announced:
                    _line(f"{self.name}: done in {elapsed}")
                self._announced = True  # a timer that fires late must not announce a finished stage


@contextmanager
def stage(name: str, detail: str = "", total: int | None = None) -> Iterator[Stage]:
    """A stage that announces itself, reports progress, and says how long it took. A failure prints
    nothing more here: the error line the CLI prints says what went wrong."""
    st = Stage(name, total, detail)
    st._start()
    ok = False
    try:
        yield st
        ok = True
    finally:
        st._finish(ok)


def note(text: str) -> None:
    """One line of news outside a stage (e.g. the first-use host fit), unless progress is off."""
    if current_mode() != "off":
        _line(text)


def _line(text: str) -> None:
    stream = _config["stream"] or sys.stderr
    try:
        stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed pipe must not kill the conversion


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes} min {sec:02d} s"


# -- child-process status ---------------------------------------------------------------------------
def write_status(path: str | Path | None, **fields: Any) -> None:
    """Child side: replace the status file in one step, so the parent never reads half of it."""
    if not path:
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(fields, default=str))
        os.replace(tmp, target)
    except OSError:
        pass  # progress is a courtesy; it must never fail the work


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def follow(proc: subprocess.Popen, status_path: Path, st: Stage, render: Callable[[dict[str, Any]], None],
           timeout_s: float) -> int:
    """Parent side: wait for `proc`, passing each new status to `render`; raises TimeoutExpired
    (after killing the child) like subprocess.run would."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, Any] | None = None
    while True:
        try:
            code = proc.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        status = read_status(status_path)
        if status is not None and status != seen:
            seen = status
            render(status)
        st.tick()
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
    status = read_status(status_path)
    if status is not None and status != seen:
        render(status)
    return code


def run_followed(argv: list[str], log: Any, env: dict[str, str], status_path: Path, st: Stage,
                 render: Callable[[dict[str, Any]], None], timeout_s: float) -> int:
    """Start a worker child with its output in `log` and follow it (see follow); Ctrl-C or an
    error here kills it, so no converter is ever left running behind the user's back."""
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        return follow(proc, status_path, st, render, timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise


def exit_description(code: int) -> str:
    """A child's return code in words: "crashed (SIGSEGV)" or "failed (exit status 1)"."""
    if code < 0:
        try:
            return f"crashed ({signal.Signals(-code).name})"
        except ValueError:
            return f"crashed (signal {-code})"
    return f"failed (exit status {code})"

