"""A headless Chromium driven over the DevTools protocol through a pipe (no extra packages).

``--remote-debugging-pipe`` makes Chromium read commands on fd 3 and answer on fd 4, each message
JSON terminated by a NUL byte. Enough for tests and benchmarks: open a page, run script, type,
press keys, take a screenshot. Used by tests/test_explore.py and benchmarks/explorer.py.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class Browser:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, executable: str, width: int = 1200, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_child_read, self._to_child = os.pipe()
        self._from_child, from_child_write = os.pipe()

        def map_fds() -> None:  # the child's fds 3 and 4 are the protocol pipe
            # Copies above 10 first, so neither end is overwritten if it already is fd 3 or 4.
            read_end = fcntl.fcntl(to_child_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.process = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # fds 3 and 4 are kept: preexec_fn runs before the child closes unlisted fds
            preexec_fn=map_fds, pass_fds=(3, 4, to_child_read, from_child_write))
        os.close(to_child_read)
        os.close(from_child_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_child)
        os.close(self._from_child)
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and wait for its answer; events seen meanwhile go to ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def send(self, method: str, **params) -> dict:
        """A command to the page."""
        return self.call(method, self.session, **params)

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str, timeout: float = 60) -> None:
        """Navigate and wait until the document has loaded (scripts included)."""
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                      timeout)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        """Poll a script expression until it is truthy; returns its value (a DOM node as True:
        nodes come back as empty objects, which Python would call false)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(f"(() => {{ const v = ({expression}); "
                                  "return v instanceof Node ? true : v; })()")
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {expression}")
            time.sleep(0.02)

    def type_text(self, text: str) -> None:
        self.send("Input.insertText", text=text)

    def press(self, key: str, code: str | None = None, key_code: int = 0,
              shift: bool = False) -> None:
        """A real key press (keydown, char for Enter, keyup) as the keyboard sends it."""
        modifiers = 8 if shift else 0
        common = {"key": key, "code": code or key, "windowsVirtualKeyCode": key_code,
                  "modifiers": modifiers}
        self.send("Input.dispatchKeyEvent", type="rawKeyDown", **common)
        if key == "Enter":
            self.send("Input.dispatchKeyEvent", type="char", text="\r", **common)
        self.send("Input.dispatchKeyEvent", type="keyUp", **common)

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        params = {"format": "png", "captureBeyondViewport": full_page}
        data = self.send("Page.captureScreenshot", **params)["data"]
        Path(path).write_bytes(base64.b64decode(data))


KEYS = {"Tab": ("Tab", 9), "Enter": ("Enter", 13), "ArrowDown": ("ArrowDown", 40),
        "ArrowUp": ("ArrowUp", 38), "Escape": ("Escape", 27)}


def press(browser: Browser, name: str, shift: bool = False) -> None:
    """Press a named key (``KEYS``)."""
    code, key_code = KEYS[name]
    browser.press(name, code, key_code, shift)
