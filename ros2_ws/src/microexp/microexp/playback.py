"""Pacing of recorded streams against the wall clock (no rclpy): real time, a rate factor, or flat out.

Gaps in recorded time: a bag's times are the recorder's receive times on the system clock. Between the segments of a session, and
wherever that clock was set while recording (a ±10 h jump), consecutive messages lie far apart in recorded
time. :class:`Timeline` maps recorded times to wall-clock deadlines (``rate`` 1 = as recorded) and, unless
``keep_gaps``, plays any step forward longer than ``max_gap_s`` (of recorded time) as a pause of
``max_gap_s``; a step back longer than ``max_gap_s`` (the clock was set back) plays on at once, with or
without ``keep_gaps`` (a pause cannot be negative). Each such gap gives one :class:`Gap` (to be logged as one
line naming the topic, the times either side and the length). Smaller steps back (messages of several
files or topics a little out of order) are published at once and do not move the timeline.

:func:`play` is the iterator over ``(publish_at, topic, message)`` that sleeps until each is due; the replay
node uses :class:`Timeline` itself (its own thread waits with a busy-wait for sub-millisecond timing).

Example
-------
>>> for at, topic, raw in play(messages, rate=1.0, max_gap_s=2.0, log=print):   # doctest: +SKIP
...     publisher[topic].publish(raw)
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass


class Pacer:
    """Maps sensor time (µs) to wall-clock deadlines: ``wait(t_us)`` sleeps until item ``t_us`` is due.

    ``rate`` 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible. The first item fixes the origin;
    ``restart()`` re-anchors (after a loop back to the start of a file). A :class:`Timeline` that keeps every
    gap (a live source's or a file's own time is played as it is)."""

    def __init__(self, rate: float, stop: threading.Event | None = None):
        self.rate = float(rate)
        self.stop = stop or threading.Event()
        self.timeline = Timeline(rate, max_gap_s=1e12, keep_gaps=True)  # no gap is ever shortened

    def restart(self) -> None:
        self.timeline.restart()

    def wait(self, t_us: int) -> bool:
        """Sleep until due; False if stopped meanwhile."""
        now = time.monotonic()
        due, _ = self.timeline.due("", int(t_us) * 1000, now)
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


DEFAULT_MAX_GAP_S = 2.0


def _iso(t_ns: int) -> str:
    try:
        return _dt.datetime.fromtimestamp(t_ns / 1e9, _dt.timezone.utc).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return f"{t_ns / 1e9:.3f} s"


@dataclass(frozen=True)
class Gap:
    """A step in recorded time between two consecutive messages that is longer than ``max_gap_s``."""

    topic: str  #: the topic of the message after the gap
    from_ns: int  #: recorded time of the message before
    to_ns: int  #: recorded time of the message after
    played_s: float  #: the pause it was played as (recorded seconds; the rate scales it)
    kept: bool

    @property
    def length_s(self) -> float:
        return (self.to_ns - self.from_ns) / 1e9

    def line(self) -> str:
        if self.length_s < 0:
            how = "the recorder's clock went back; played on at once"
        elif self.kept:
            how = "kept (keep_gaps)"
        else:
            how = f"played as {self.played_s:g} s (--keep-gaps / keep_gaps:=true waits it out)"
        return (
            f"gap in recorded time before {self.topic}: {_iso(self.from_ns)} -> {_iso(self.to_ns)} "
            f"({self.length_s:+.3f} s); {how}"
        )


class Timeline:
    """Recorded time (ns) -> wall-clock deadline (s on the caller's clock), over gaps (module docstring).

    ``due(topic, t_ns, now)`` returns ``(deadline, gap or None)``; with ``rate`` 0 the deadline is ``now``
    (as fast as possible) and no gap is reported. ``restart()`` begins a new pass (a loop back to the start)."""

    def __init__(self, rate: float = 1.0, max_gap_s: float = DEFAULT_MAX_GAP_S, keep_gaps: bool = False):
        self.rate = float(rate)
        self.max_gap_ns = int(float(max_gap_s) * 1e9)
        self.keep_gaps = bool(keep_gaps)
        self.gaps: list[Gap] = []
        self.restart()

    def restart(self) -> None:
        self._origin: tuple[int, float] | None = None
        self._prev_ns: int | None = None  # the latest recorded time played (the timeline's front)
        self._prev_due = 0.0

    def _at(self, t_ns: int) -> float:
        t0, w0 = self._origin
        return w0 + (t_ns - t0) * 1e-9 / self.rate

    def due(self, topic: str, t_ns: int, now: float) -> tuple[float, Gap | None]:
        if self.rate <= 0:
            return now, None
        if self._origin is None:
            self._origin, self._prev_ns, self._prev_due = (t_ns, now), t_ns, now
            return now, None
        step = t_ns - self._prev_ns
        gap = None
        if step > self.max_gap_ns and not self.keep_gaps:
            pause = self.max_gap_ns / 1e9
            self._origin = (t_ns, self._prev_due + pause / self.rate)
            gap = Gap(topic, self._prev_ns, t_ns, pause, False)
        elif step > self.max_gap_ns:
            gap = Gap(topic, self._prev_ns, t_ns, step / 1e9, True)
        elif step < -self.max_gap_ns:
            self._origin = (t_ns, max(self._prev_due, now))
            gap = Gap(topic, self._prev_ns, t_ns, 0.0, self.keep_gaps)
        if gap is not None:
            self.gaps.append(gap)
        if gap is not None or step >= 0:
            self._prev_ns = t_ns
        due = self._at(t_ns)
        self._prev_due = max(self._prev_due, due)
        return due, gap


def play(
    messages: Iterable[tuple[str, int, object]],
    rate: float = 1.0,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    keep_gaps: bool = False,
    log: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[float, str, object]]:
    """``(publish_at, topic, message)`` for every ``(topic, recorded time ns, message)``, each yielded once it
    is due (``publish_at`` on ``clock``); gaps as in the module docstring, each logged through ``log``.
    Ends early when ``stop`` is set."""
    timeline = Timeline(rate, max_gap_s, keep_gaps)
    stop = stop or threading.Event()
    for topic, t_ns, message in messages:
        at, gap = timeline.due(topic, int(t_ns), clock())
        if gap is not None and log is not None:
            log(gap.line())
        delay = at - clock()
        if (delay > 0 and stop.wait(delay)) or stop.is_set():
            return
        yield at, topic, message
