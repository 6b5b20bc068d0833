"""Load a local page in headless Chromium over the DevTools protocol and inspect it.

Used by the HTML report test: console errors and uncaught exceptions are collected while the page
loads, then JavaScript evaluated in the page measures what a reader would see. Chromium comes from
the distribution (``packaging/system-deps.sh test`` installs it); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
         "--remote-debugging-port=0"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("chromium is not installed: run packaging/system-deps.sh test (make test does)")


class Page:
    """One browser with one tab; ``load`` navigates and waits for the load event."""

    def __init__(self, width: int = 1280, height: int = 900, timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        self.proc = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={self.profile.name}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.console: list[dict[str, Any]] = []
        self._id = 0
        self.ws = websocket.create_connection(self._page_socket(), timeout=timeout_s)
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _page_socket(self) -> str:
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit status {self.proc.poll()})")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        from urllib.request import urlopen

        while True:
            with urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
                targets = [t for t in json.load(reply) if t.get("type") == "page"]
            if targets:
                return targets[0]["webSocketDebuggerUrl"]
            if time.monotonic() > deadline:
                raise RuntimeError("chromium opened no page")
            time.sleep(0.1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        wanted = self._id
        self.ws.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params") or {}
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.console.append({"source": "console", "text": " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", []))})
        elif method == "Runtime.exceptionThrown":
            self.console.append({"source": "exception",
                                 "text": params.get("exceptionDetails", {}).get("text", "exception")})
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.console.append({"source": "log", "text": params["entry"].get("text", "")})
        elif method == "Page.loadEventFired":
            self._loaded = True

    def load(self, path: Path) -> None:
        self._loaded = False
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + self.timeout_s
        while not self._loaded:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path}: no load event within {self.timeout_s} s")
            self._event(json.loads(self.ws.recv()))
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def close(self) -> None:
        """Stop the browser and every helper process it started, then remove the profile.

        Chromium's renderer and crash handler live in their own processes and can still be writing
        into the profile after the main process exits, so the whole process group is stopped and the
        removal is retried briefly.
        """
        try:
            self.ws.close()
        finally:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self._signal_group(signal.SIGKILL)
            self._remove_profile()

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _remove_profile(self) -> None:
        for attempt in range(20):
            try:
                shutil.rmtree(self.profile.name)
            except FileNotFoundError:
                break
            except OSError:
                if attempt == 19:
                    raise
                time.sleep(0.1)
            else:
                break
        self.profile.cleanup()  # nothing left to remove; stops the finalizer warning

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
