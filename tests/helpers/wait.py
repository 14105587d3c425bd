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


def settled(read: Callable[[], object], quiet_s: float) -> Callable[[], object]:
    """A condition for :func:`wait_until`: once ``read()`` has given the same value for ``quiet_s`` (e.g. a count
    that stops growing when the last messages have arrived), that value in a 1-tuple (true even when the value
    is 0), else None."""
    last: list = []  # [value, since]

    def condition() -> object:
        value, now = read(), time.monotonic()
        if not last or value != last[0]:
            last[:] = [value, now]
            return None
        return (value,) if now - last[1] >= quiet_s else None

    return condition
