"""A headless Chromium on the monitor page, for the tests and the benchmark: Debian's ``chromium`` driven by
Playwright (its own browser download is never used). ``python -m microexp.monitor.browser URL`` holds the page
open until killed: it prints ``open`` once the page is live (its websocket connected)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from contextlib import contextmanager

from microexp.errors import MicroexpError

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    """The Chromium executable: $MICROEXP_CHROMIUM, else ``chromium`` on PATH."""
    path = os.environ.get("MICROEXP_CHROMIUM") or shutil.which("chromium") or ""
    if not path or not os.access(path, os.X_OK):
        raise MicroexpError(
            "no chromium found (apt-get install chromium, which `make test` does, or set MICROEXP_CHROMIUM)"
        )
    return path


@contextmanager
def browser():
    """A headless Chromium (Playwright's Browser), closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def wait_js(page, expression: str, timeout_s: float = 30.0, period_s: float = 0.1):
    """Poll the JavaScript ``expression`` on ``page`` until it is truthy; its value. (Playwright's own
    ``wait_for_function`` evaluates strings inside the page, which the page's Content-Security-Policy forbids.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} stayed false for {timeout_s} s")
        time.sleep(period_s)


def wait_live(page, timeout_s: float = 30.0) -> None:
    """Wait until the page's websocket is connected and a snapshot arrived."""
    wait_js(page, "document.body.dataset.updated !== undefined", timeout_s)


def main(argv: list[str]) -> int:
    url = argv[0]
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url)
        wait_live(page)
        print("open", flush=True)
        while True:
            time.sleep(1.0)
            page.title()  # keeps the driver's connection busy enough to notice a dead browser


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
