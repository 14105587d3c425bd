"""Event filters applied before binning, the same in the dataset builder and the live node.

:class:`BackgroundActivityFilter` removes background activity (BA) noise: shot and leak noise fire isolated
pixels at random, while a moving edge fires neighbouring pixels within a short time. An event passes when
one of its 8 neighbouring pixels had an event (of either polarity, passed or not) within ``dt_us`` before
it; every event then becomes the latest of its own pixel. This is the classic nearest-neighbour BA filter
of the event-camera literature (Delbruck 2008; dv-processing's ``BackgroundActivityNoiseFilter`` and
Metavision's ``ActivityNoiseFilterAlgorithm`` filter on the same idea). The filter is stateful: feeding a
stream packet by packet gives the same result as one call on the whole stream.

Example
-------
>>> f = BackgroundActivityFilter(346, 260, dt_us=2000)
>>> kept = f(events)          # EVENT_DTYPE, time-sorted; the pixel memory carries over to the next call
"""

from __future__ import annotations

import functools

import numpy as np

from microexp.errors import ParameterError
from microexp.events.dtype import take_events

#: timestamp of "never": far enough in the past that ``t - NEVER`` exceeds any dt
NEVER = np.int64(-(1 << 62))


@functools.lru_cache(maxsize=None)
def _kernel():
    from numba import njit

    @njit(cache=True, nogil=True, boundscheck=False)
    def ba_filter(x, y, t, p, last, dt, keep, x0, y0, x1, y1, pmax):  # pragma: no cover - compiled
        # last: [H + 2, W + 2] latest timestamp per pixel, with a border that never fires; events outside the
        # box [x0, x1) x [y0, y1) or of a polarity above pmax are not seen (not kept, not remembered)
        n = 0
        seen = 0
        for i in range(x.shape[0]):
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            if xi < x0 or xi >= x1 or yi < y0 or yi >= y1 or np.int64(p[i]) > pmax:
                keep[i] = False
                continue
            seen += 1
            xi += 1
            yi += 1
            ti = t[i]
            # support from any of the 8 neighbours (the first one found ends the search)
            ok = (
                ti - last[yi, xi - 1] <= dt
                or ti - last[yi, xi + 1] <= dt
                or ti - last[yi - 1, xi] <= dt
                or ti - last[yi + 1, xi] <= dt
                or ti - last[yi - 1, xi - 1] <= dt
                or ti - last[yi - 1, xi + 1] <= dt
                or ti - last[yi + 1, xi - 1] <= dt
                or ti - last[yi + 1, xi + 1] <= dt
            )
            last[yi, xi] = ti
            keep[i] = ok
            n += ok
        return n, seen

    return ba_filter


class BackgroundActivityFilter:
    """Nearest-neighbour background-activity filter for one sensor (see the module docstring).

    Parameters
    ----------
    width, height:
        Sensor size; events outside it raise :class:`ParameterError`.
    dt_us:
        Support window: an event passes when a neighbour fired at most this many µs before it (> 0).
    """

    def __init__(self, width: int, height: int, dt_us: int):
        if int(width) <= 0 or int(height) <= 0:
            raise ParameterError(f"BackgroundActivityFilter: bad sensor size {width}x{height}")
        if not int(dt_us) > 0:
            raise ParameterError(f"BackgroundActivityFilter: dt_us must be > 0, got {dt_us!r}")
        self.width, self.height, self.dt_us = int(width), int(height), int(dt_us)
        self._last = np.full((self.height + 2, self.width + 2), NEVER, dtype=np.int64)
        self.seen = 0
        self.kept = 0

    def reset(self) -> None:
        """Forget the pixel memory (a new stream, or time went backwards)."""
        self._last.fill(NEVER)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        """The events of ``events`` (EVENT_DTYPE, time-sorted) that have neighbour support, in order."""
        n = events.shape[0]
        if n == 0:
            return events
        x, y = events["x"], events["y"]
        if int(x.max()) >= self.width or int(y.max()) >= self.height:
            raise ParameterError(
                f"BackgroundActivityFilter: event outside the {self.width}x{self.height} sensor "
                f"(x max {int(x.max())}, y max {int(y.max())})"
            )
        keep = np.empty(n, dtype=np.bool_)
        kept, _ = self._run(events, keep, (0, 0, self.width, self.height), 255)
        self.seen += n
        self.kept += int(kept)
        return take_events(events, keep)

    def count_in_box(self, events: np.ndarray, box: tuple) -> tuple[int, int]:
        """``(events of polarity 0 or 1 inside the integer pixel box (x0, y0, x1, y1), those of them with
        neighbour support)``, in one pass: only the box's events are seen and remembered, so the cost follows
        the box, not the sensor, and nothing is copied."""
        n = events.shape[0]
        if n == 0:
            return 0, 0
        x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
        x1, y1 = min(int(box[2]), self.width), min(int(box[3]), self.height)
        kept, seen = self._run(events, np.empty(n, dtype=np.bool_), (x0, y0, x1, y1), 1)
        return int(seen), int(kept)

    def _run(self, events: np.ndarray, keep: np.ndarray, box: tuple, pmax: int) -> tuple[int, int]:
        return _kernel()(
            events["x"],
            events["y"],
            events["t"].astype(np.int64, copy=False),
            events["p"],
            self._last,
            np.int64(self.dt_us),
            keep,
            *(np.int64(v) for v in box),
            np.int64(pmax),
        )
