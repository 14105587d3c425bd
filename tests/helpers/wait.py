"""Waiting for a condition instead of sleeping a fixed time before an assert."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(condition: Callable[[], object], timeout_s: float, message: str = "", period_s: float = 0.01):
    """Poll ``condition()`` until it returns something true (returned) or ``timeout_s`` passes (AssertionError
    with ``message``)."""
    end = time.monotonic() + timeout_s
    while True:
        got = condition()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(message or f"condition not met within {timeout_s:g} s")
        time.sleep(period_s)
