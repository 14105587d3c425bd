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
    def ba_filter(x, y, t, last, dt, keep):  # pragma: no cover - compiled
        # last: [H + 2, W + 2] latest timestamp per pixel, with a border that never fires
        n = 0
        for i in range(x.shape[0]):
            xi = np.int64(x[i]) + 1
            yi = np.int64(y[i]) + 1
            ti = t[i]
            ok = False
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if (dy != 0 or dx != 0) and ti - last[yi + dy, xi + dx] <= dt:
                        ok = True
            last[yi, xi] = ti
            keep[i] = ok
            n += ok
        return n

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
        kept = _kernel()(x, y, events["t"].astype(np.int64, copy=False), self._last, np.int64(self.dt_us), keep)
        self.seen += n
        self.kept += int(kept)
        return take_events(events, keep)
