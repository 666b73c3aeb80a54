"""A minimal W3C WebDriver client for headless Chromium (Debian ``chromium`` + ``chromium-driver``).

No Selenium needed: chromedriver speaks JSON over HTTP. Used by the report test, and by hand:

    python3 tests/browser_helpers.py runs/demo/report.html shot.png
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def find_browser() -> tuple[str, str] | None:
    """``(chromium, chromedriver)`` paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium session driven through chromedriver; use as a context manager."""

    def __init__(self, width: int = 1200, height: int = 900) -> None:
        found = find_browser()
        if found is None:
            raise RuntimeError("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
        self.browser, driver = found
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="cn-chromium-")
        self.driver = subprocess.Popen(
            [driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120  # a hang guard, generous for a loaded machine
        while True:
            try:
                self._call("GET", "/status")
                break
            except OSError:
                if time.monotonic() > deadline or self.driver.poll() is not None:
                    self.close()
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.2)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": self.browser,
                        "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
                    },
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 120) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read().decode() or "{}")
        value = out.get("value", out)
        if isinstance(value, dict) and value.get("error"):
            raise RuntimeError(f"webdriver {path}: {value['error']}: {value.get('message', '')[:300]}")
        return value if path != "/session" else {"sessionId": out.get("sessionId") or value.get("sessionId")}

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})
        deadline = time.monotonic() + 120  # a hang guard, generous for a loaded machine
        while self.run("return document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise RuntimeError("page did not finish loading")
            time.sleep(0.1)

    def run(self, script: str, *args: Any) -> Any:
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def images(self) -> list[dict[str, Any]]:
        """Every <img>: whether it finished loading and its natural size (0 when it failed to decode)."""
        return self.run(
            "return Array.from(document.images).map(i => ({src: i.src.slice(0, 40), alt: i.alt, complete: i.complete, "
            "width: i.naturalWidth, height: i.naturalHeight, shown: i.getBoundingClientRect().width}))"
        )

    def screenshot(self, path: str | Path, full_page: bool = True) -> Path:
        if full_page:
            height = int(self.run("return Math.ceil(document.documentElement.scrollHeight)"))
            width = int(self.run("return window.outerWidth")) or 1200
            self._call("POST", self._s("/window/rect"), {"width": width, "height": min(height + 40, 16000)})
        png = base64.b64decode(self._call("GET", self._s("/screenshot")))
        Path(path).write_bytes(png)
        return Path(path)

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._call("DELETE", self._s(""), timeout=30)
        except Exception:
            pass
        self.driver.terminate()
        try:
            self.driver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    page, shot = Path(sys.argv[1]).resolve(), sys.argv[2]
    with Browser() as b:
        b.open(page.as_uri())
        print(json.dumps(b.images(), indent=1))
        b.screenshot(shot)
        print("screenshot:", shot)
