"""Pacing of recorded streams against the wall clock (no rclpy): real time, a rate factor, or flat out."""

from __future__ import annotations

import threading
import time


class Pacer:
    """Maps sensor time (µs) to wall-clock deadlines: ``wait(t_us)`` sleeps until item ``t_us`` is due.

    ``rate`` 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible. The first item fixes the origin;
    ``restart()`` re-anchors (after a loop back to the start of a file).
    """

    def __init__(self, rate: float, stop: threading.Event | None = None):
        self.rate = float(rate)
        self.stop = stop or threading.Event()
        self._origin: tuple[int, float] | None = None

    def restart(self) -> None:
        self._origin = None

    def wait(self, t_us: int) -> bool:
        """Sleep until due; False if stopped meanwhile."""
        if self.rate <= 0:
            return not self.stop.is_set()
        now = time.monotonic()
        if self._origin is None:
            self._origin = (t_us, now)
            return not self.stop.is_set()
        t0, w0 = self._origin
        due = w0 + (t_us - t0) * 1e-6 / self.rate
        delay = due - now
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()
