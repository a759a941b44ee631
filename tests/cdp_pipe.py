"""A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`: no extra dependency, no port.

Chromium reads commands on fd 3 and writes replies and events on fd 4, one JSON message each,
NUL-terminated. The browser is spawned in its own process group, so closing it ends exactly the
processes this client started (the renderer and GPU helpers included) and nothing else.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


class CdpError(RuntimeError):
    pass


class Browser:
    """One headless browser; `events` keeps every event received, in order, for the test to inspect."""

    def __init__(self, binary: str, profile_dir: Path, log: Path, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.log = log
        self.events: list[dict[str, Any]] = []
        self._next = 0
        self._buffer = b""
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The browser needs these exact fd numbers; first move both ends above them so the dup2s
        # below cannot overwrite one with the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        args = [binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
                # root in a container has no user namespaces for the sandbox; the page is our own file
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--mute-audio",
                "about:blank"]
        actions = [(os.POSIX_SPAWN_DUP2, high[0], 3), (os.POSIX_SPAWN_DUP2, high[1], 4),
                   (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        try:
            self.pid = os.posix_spawn(binary, args, os.environ, file_actions=actions, setpgroup=0)
        finally:
            for fd in high:
                os.close(fd)
        self._send_fd, self._recv_fd = to_browser_w, from_browser_r

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply; events that arrive meanwhile go to `events`."""
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._send_fd, json.dumps(msg).encode() + b"\0")
        reply = self._until(lambda m: m.get("id") == self._next, f"reply to {method}")
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None) -> dict[str, Any]:
        seen = next((e for e in self.events if e["method"] == method and e.get("sessionId") == session), None)
        return seen or self._until(lambda m: m.get("method") == method and m.get("sessionId") == session, method)

    def _until(self, match: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                if match(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise CdpError(f"no {what} within {self.timeout_s:.0f} s; browser log: {self._log_tail()}")
            chunk = os.read(self._recv_fd, 1 << 20)
            if not chunk:
                raise CdpError(f"the browser closed the pipe waiting for {what}; browser log: {self._log_tail()}")
            self._buffer += chunk

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else "(none)"

    def open_page(self, url: str, width: int = 1200, height: int = 900) -> str:
        """A new tab with the runtime, log and network domains on, loaded with `url`: its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.events = [e for e in self.events if e.get("sessionId") != session]
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           session)
        if "exceptionDetails" in result:
            raise CdpError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str) -> bytes:
        """The whole page (beyond the viewport) as PNG bytes."""
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session)
        return base64.b64decode(shot["data"])

    def console_errors(self, session: str) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (a failed resource load) of a tab."""
        found = []
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                found.append(f"exception: {details.get('text')} {(details.get('exception') or {}).get('description', '')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
        return found

    def requests(self, session: str) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("sessionId") == session and e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (CdpError, OSError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
        try:  # helpers left behind by a browser that did not close: only this browser's process group
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        for fd in (self._send_fd, self._recv_fd):
            os.close(fd)
