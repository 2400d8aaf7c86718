"""Headless Chromium driven over the Chrome DevTools Protocol, through a pipe.

Debian's ``chromium`` and nothing else: ``--remote-debugging-pipe`` makes the browser
read protocol messages (JSON, each ending in a NUL byte) from file descriptor 3 and
write its answers and events to descriptor 4, so no port, no websocket library and no
downloaded browser are needed. :class:`Chromium` starts one browser with one page;
:meth:`Chromium.call` sends a command and returns its result, keeping the events that
arrive meanwhile (page loads, finished downloads, uncaught script errors).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

# The flags the network-closed CI needs: no sandbox (root in a container), no GPU, and
# nothing that phones home.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


def chromium_path() -> str | None:
    """Debian's ``chromium`` (or another Chromium/Chrome on the PATH), else None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless browser and one page (a flat session on a new target)."""

    def __init__(self, user_data_dir: Path, *, width: int = 1280, height: int = 900, timeout: float = 30.0):
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("no chromium on the PATH")
        self.timeout, self.events, self._next, self._buffer = timeout, [], 0, b""
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        # Above 10, so that the dup2 onto 3 and 4 in the child cannot overwrite one another.
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser))
        os.close(to_browser)
        os.close(from_browser)

        def onto_3_and_4() -> None:  # in the child, before exec: dup2 leaves the copies inheritable
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
             "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=onto_3_and_4, close_fds=False)
        os.close(child_in)
        os.close(child_out)
        try:
            target = self.call("Target.createTarget", url="about:blank", session=False)["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
            for domain in ("Page", "Runtime"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except Exception:
            self.close()
            raise

    # --- the protocol ---------------------------------------------------------------------

    def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        """Send ``method`` (to the page's session, or ``session=False`` to the browser)
        and wait for its answer; a protocol error raises."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited: {self.process.stderr.read().decode(errors='replace')[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def wait_for_event(self, method: str, predicate=lambda params: True) -> dict[str, Any]:
        """The first event ``method`` (seen already or arriving) whose params satisfy ``predicate``."""
        deadline = time.monotonic() + self.timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and predicate(event.get("params", {})):
                    return event["params"]
            seen = len(self.events)
            self.events.append(self._receive(deadline))

    # --- what the tests do ------------------------------------------------------------------

    def open(self, path: Path, ready: str = "document.body && document.body.dataset.ready === '1'") -> None:
        """Load a local file and wait until ``ready`` holds."""
        self.events.clear()
        self.call("Page.navigate", url=Path(path).resolve().as_uri())
        self.wait_for_event("Page.loadEventFired")  # the new document's, not the one before (which was ready too)
        self.wait_until(ready)

    def wait_until(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} never held")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def press(self, key: str) -> None:
        """One key press as the user makes it (keydown and keyup of ``key``: 'r', 'ArrowRight')."""
        code = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowDown": 40, "ArrowUp": 38, "End": 35, "Home": 36, "PageDown": 34,
                "PageUp": 33}.get(key, ord(key.upper()[0]))
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, windowsVirtualKeyCode=code,
                      **({"text": key} if kind == "keyDown" and len(key) == 1 else {}))

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element ``selector`` matches."""
        box = self.evaluate(f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
                            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
                            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def set_value(self, selector: str, value: str) -> None:
        """Choose ``value`` in a select or type it into an input, as the user does (its
        ``change`` and ``input`` events follow)."""
        self.evaluate(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.value = {json.dumps(value)};"
                      " el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); })()")

    def download_to(self, folder: Path) -> None:
        """Let the page's downloads land in ``folder`` (and report when they are done)."""
        self.downloads = Path(folder)
        self.call("Browser.setDownloadBehavior", session=False, behavior="allow", downloadPath=str(folder),
                  eventsEnabled=True)

    def wait_for_download(self) -> Path:
        """The file of the next download to complete."""
        begun = self.wait_for_event("Browser.downloadWillBegin")
        done = self.wait_for_event("Browser.downloadProgress",
                                   lambda p: p.get("guid") == begun["guid"] and p.get("state") == "completed")
        self.events = [e for e in self.events if e.get("params", {}).get("guid") != begun["guid"]]
        return Path(done.get("filePath") or self.downloads / begun["suggestedFilename"])

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def script_errors(self) -> list[str]:
        """Uncaught exceptions and console errors the page produced so far."""
        out = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                out.append(str(event["params"]["exceptionDetails"].get("exception", {}).get("description")))
            elif event.get("method") == "Runtime.consoleAPICalled" and event["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
        return out

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except Exception:  # noqa: BLE001  (already gone)
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.stderr:
            self.process.stderr.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
