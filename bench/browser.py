"""Headless Chromium over the DevTools protocol, standard library only.

Used by the explorer benchmark (how long ``report.html`` takes to open) and by the browser tests
(fold, search, detail panel, screenshot, no network request). Chromium is started with
``--remote-debugging-pipe``: commands go in on its file descriptor 3 and answers come out of 4,
as JSON messages ended by a NUL byte — no port, no websocket library. The page runs with the
network emulated offline and every host name unresolvable, and every request it makes is
recorded (:attr:`Page.requests`).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Browser", "BrowserError", "Page", "chromium"]

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
         "--disable-quic", "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe")


class BrowserError(RuntimeError):
    """Chromium answered a command with an error, died, or did not answer in time."""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One Chromium process; ``with Browser() as b: page = b.open(path)``."""

    def __init__(self, *, timeout: float = 60.0) -> None:
        exe = chromium()
        if exe is None:
            raise BrowserError("chromium not installed (scripts/ensure_chromium.sh)")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="cogtrace-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes answers
            # Copies first (the pipe ends may themselves be 3 or 4). A copy can land on 3 or 4
            # itself when those are free, and dup2 onto the same descriptor leaves its
            # close-on-exec flag set: make both inheritable explicitly.
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        # close_fds=False: pass_fds=(3, 4) would make subprocess check fds 3 and 4 in *this*
        # process, which fails (EBADF) when nothing happens to be open there (a detached shell).
        # Python's own descriptors are not inheritable (PEP 446), so only 0-4 reach Chromium.
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
                                     preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    # -- the protocol ---------------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise BrowserError(f"chromium exited (status {self.proc.poll()})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Run one command and return its result; events that arrive meanwhile go to :attr:`events`."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                return dict(answer.get("result", {}))
            if "method" in answer:
                self.events.append(answer)

    def wait_event(self, method: str, session: str | None = None) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) not yet consumed, waiting for it if needed."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method and (session is None or event.get("sessionId") == session):
                    return dict(self.events.pop(i).get("params", {}))
            answer = self._read_message(deadline)
            if "method" in answer:
                self.events.append(answer)

    # -- pages ----------------------------------------------------------------------------------
    def open(self, path: str | Path, *, width: int = 1280, height: int = 900) -> Page:
        """A new tab, offline, at ``width`` x ``height`` CSS pixels, showing ``path`` (loaded)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        self.send("Page.enable", session=session)
        self.send("Network.enable", session=session)
        self.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        page.navigate(Path(path).resolve().as_uri())
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close")
            except BrowserError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.load_seconds = 0.0

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event; :attr:`load_seconds` is how long that took."""
        start = time.perf_counter()
        result = self.browser.send("Page.navigate", {"url": url}, self.session)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session)
        self.load_seconds = time.perf_counter() - start

    @property
    def requests(self) -> list[str]:
        """URLs of every request the page made, in order (the page itself included)."""
        return [e["params"]["request"]["url"] for e in self.browser.events
                if e["method"] == "Network.requestWillBeSent" and e.get("sessionId") == self.session]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited); page errors raise."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:60]}…: {text}")
        return result.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the middle of the first element matching ``selector``."""
        box = self.evaluate(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            if (!el) return null; el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
            return [r.left + Math.min(r.width / 2, 40), r.top + r.height / 2]; }})()""")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                           "clickCount": 1}, self.session)

    def key(self, key: str, code: int = 0) -> None:
        """A key press as a user types it (``'/'``, ``'ArrowDown'``, ``'Escape'``)."""
        text = {"text": key} if len(key) == 1 else {}
        for kind in ("keyDown", "keyUp"):
            self.browser.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "windowsVirtualKeyCode": code,
                                                         **(text if kind == "keyDown" else {})}, self.session)

    def type(self, text: str) -> None:
        self.browser.send("Input.insertText", {"text": text}, self.session)

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """PNG of the viewport, or of ``clip`` (page coordinates: x, y, width, height)."""
        params: dict[str, Any] = {"format": "png"}
        if clip is not None:
            params["clip"] = {**clip, "scale": 1}
            params["captureBeyondViewport"] = True
        return base64.b64decode(self.browser.send("Page.captureScreenshot", params, self.session)["data"])
