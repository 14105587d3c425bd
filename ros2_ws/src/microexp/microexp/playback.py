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


class LagMonitor:
    """How far a live stream's publishing falls behind its source: for each packet (sensor time of its last
    data, wall-clock time it goes out), the delay beyond the smallest seen since :meth:`restart` (a fixed
    transport latency is not lag). A node that keeps up stays near 0; one that cannot carry what the sensor
    produces falls behind more and more, and its source (OpenEB's buffers, the USB link) holds or drops the
    rest. ``rate`` scales sensor time (a file paced at 2× plays 1 s of sensor time per 0.5 s).

    ``update`` returns True once per stream, when the lag first exceeds ``warn_ms``; ``late`` counts the
    packets published beyond it, ``max_ms`` is the largest lag seen."""

    def __init__(self, warn_ms: float, rate: float = 1.0):
        self.warn_ms = float(warn_ms)
        self.rate = float(rate)
        self.late = 0
        self.max_ms = 0.0
        self.lag_ms = 0.0
        self.restart()

    def restart(self) -> None:
        """A new stream (camera reopened, file looped): a new origin and latency floor; the counts stay."""
        self._origin: tuple[int, float] | None = None
        self._floor = float("inf")
        self._warned = False

    def update(self, sensor_us: int, wall_s: float | None = None) -> bool:
        if self.rate <= 0 or sensor_us < 0:
            return False
        wall = time.monotonic() if wall_s is None else wall_s
        if self._origin is None:
            self._origin = (sensor_us, wall)
        t0, w0 = self._origin
        delay_ms = ((wall - w0) - (sensor_us - t0) * 1e-6 / self.rate) * 1e3
        self._floor = min(self._floor, delay_ms)
        self.lag_ms = delay_ms - self._floor
        self.max_ms = max(self.max_ms, self.lag_ms)
        if self.warn_ms <= 0 or self.lag_ms <= self.warn_ms:
            return False
        self.late += 1
        if self._warned:
            return False
        self._warned = True
        return True
