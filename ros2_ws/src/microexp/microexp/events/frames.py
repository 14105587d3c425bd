"""Two-channel event frames, the paper's Eq. (1).

For a time slice [t0, t0 + T) the frame F_p(x, y) counts the events of polarity p at pixel (x, y)::

    F_p(x, y) = sum_i  I_{p,x,y}(p_i, x_i, y_i)      (paper §4.2, Eq. 1)

Here the frames of consecutive slices are stacked into an array of shape ``(n_slices, 2, height, width)``;
channel index = polarity value of :data:`~microexp.events.dtype.EVENT_DTYPE` (0 = OFF, 1 = ON), and slice k
covers ``[t_start + k*slice_us, t_start + (k+1)*slice_us)`` (left-closed, right-open, so an event exactly on
an edge belongs to the later slice).

:func:`event_frames` bins a whole recording; :class:`EventBinner` bins a live stream window by window. Both
run the same numba kernel, so for the same events they give identical frames. :class:`EventSlicer` cuts a
live stream on the same window grid but hands out each window's *events*: the live node and the dataset
builder crop those directly (:func:`microexp.vision.crop.crop_events`, equal to cropping the Eq. (1) frame)
and never build a full-sensor frame.

Counts saturate at the largest value of the output dtype (65535 for the default uint16) instead of
wrapping around. Events outside the sensor (x >= width, y >= height) or with a polarity other than 0 or 1
are not counted.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from numba import njit

from microexp.errors import ParameterError
from microexp.events.dtype import DEFAULT_SLICE_US, EVENT_DTYPE, concat_events, take_events

__all__ = ["event_frames", "EventBinner", "EventSlicer", "DEFAULT_SLICE_US"]


@njit(cache=True, nogil=True, boundscheck=False)
def _accumulate(xy, t, p, out, t0, slice_us, n_slices, width, height, maxv, zeroed):  # pragma: no cover
    """Add the events into ``out`` (flat, n_slices*2*height*width) in one pass over the events.

    ``xy`` holds x in its low and y in its high 16 bits (for EVENT_DTYPE input a strided uint32 view of the
    array itself: one load instead of two). Slices ``[0, zeroed)`` of ``out`` hold counts to add to; the
    later ones are uninitialised and are zeroed here just before their first use (so a fresh ``np.empty``
    buffer is written while it is in cache). Works for any event order; for time-sorted events the slice is
    found by two compares. Returns (events before t0, events at or after t0 + n_slices*slice_us).
    """
    plane = width * height
    fsize = 2 * plane
    span = n_slices * slice_us
    n_before = 0
    n_after = 0
    lo = t0
    hi = t0 - 1  # empty window: the first event takes the slow path
    base = 0
    for q in range(t.shape[0]):
        tq = t[q]
        if tq >= hi or tq < lo:
            d = tq - t0
            if d < 0:
                n_before += 1
                continue
            if d >= span:
                n_after += 1
                continue
            k = d // slice_us
            if k >= zeroed:
                out[zeroed * fsize : (k + 1) * fsize] = 0
                zeroed = k + 1
            lo = t0 + k * slice_us
            hi = lo + slice_us
            base = k * fsize
        v32 = np.intp(xy[q])
        xq = v32 & 0xFFFF
        yq = v32 >> 16
        pq = np.intp(p[q])
        if (xq < width) & (yq < height) & (pq < 2):
            j = base + pq * plane + yq * width + xq
            v = out[j]
            if v < maxv:
                out[j] = v + 1
    if zeroed < n_slices:
        out[zeroed * fsize : n_slices * fsize] = 0
    return n_before, n_after


# EVENT_DTYPE seen with x and y as one little-endian uint32 (same itemsize, so any 1-D view can be re-viewed)
_XY_VIEW = np.dtype(
    {
        "names": ["xy", "t", "p"],
        "formats": ["<u4", "<i8", "u1"],
        "offsets": [0, 4, 12],
        "itemsize": EVENT_DTYPE.itemsize,
    }
)


def _columns(events: np.ndarray):
    """(xy uint32, t int64, p uint8) for the kernel: views for EVENT_DTYPE, converted copies otherwise."""
    if events.dtype == EVENT_DTYPE:
        v = events.view(_XY_VIEW)
        return v["xy"], v["t"], v["p"]
    x = np.asarray(events["x"]).astype(np.int64)
    y = np.asarray(events["y"]).astype(np.int64)
    bad = (x < 0) | (x > 0xFFFF) | (y < 0) | (y > 0xFFFF)  # values no uint16 holds: never on the sensor
    xy = (np.where(bad, 0xFFFF, x) | (np.where(bad, 0xFFFF, y) << 16)).astype(np.uint32)
    p = np.asarray(events["p"]).astype(np.int64)
    p = np.where((p == 0) | (p == 1), p, 2).astype(np.uint8)
    return xy, np.asarray(events["t"]).astype(np.int64), p


def _check_events(events) -> np.ndarray:
    if not isinstance(events, np.ndarray) or events.dtype.names is None or events.ndim != 1:
        raise ParameterError("events: expected a 1-D structured array of EVENT_DTYPE (fields x, y, t, p)")
    missing = [f for f in ("x", "y", "t", "p") if f not in events.dtype.names]
    if missing:
        raise ParameterError(f"events: the array lacks the field(s) {', '.join(missing)}")
    return events


def _check_geometry(width, height, slice_us):
    for name, v in (("width", width), ("height", height), ("slice_us", slice_us)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ParameterError(f"{name} must be a positive integer, got {v!r}")
    if width > 0xFFFF or height > 0xFFFF:
        raise ParameterError(f"sensor size {width}x{height} is larger than 65535 pixels a side")
    return int(width), int(height), int(slice_us)


def _count_dtype(dtype):
    dt = np.dtype(dtype)
    if dt.kind in "ui":
        return dt, np.array(np.iinfo(dt).max, dtype=dt)[()]
    if dt.kind == "f":
        return dt, np.array(np.inf, dtype=dt)[()]
    raise ParameterError(f"dtype must be an integer or floating dtype, got {dt}")


def _run(events, out_flat, t0, slice_us, n_slices, width, height, maxv, zeroed):
    xy, t, p = _columns(events)
    return _accumulate(
        xy,
        t,
        p,
        out_flat,
        np.int64(t0),
        np.int64(slice_us),
        np.int64(n_slices),
        np.int64(width),
        np.int64(height),
        maxv,
        np.int64(zeroed),
    )


def event_frames(
    events: np.ndarray,
    width: int,
    height: int,
    slice_us: int = DEFAULT_SLICE_US,
    t_start: Optional[int] = None,
    n_slices: Optional[int] = None,
    dtype=np.uint16,
) -> np.ndarray:
    """Eq. (1) frames of ``events``: an array of shape ``(n_slices, 2, height, width)``.

    ``t_start`` defaults to the first event's t. ``n_slices`` defaults to as many slices as reach the
    latest event. Events outside ``[t_start, t_start + n_slices*slice_us)`` are ignored.

    Example
    -------
    >>> from microexp.events.dtype import make_events
    >>> ev = make_events([0, 1, 1], [0, 0, 0], [0, 10, 33_000], [1, 0, 0])
    >>> f = event_frames(ev, width=2, height=1)
    >>> f.shape, int(f[0, 1, 0, 0]), int(f[0, 0, 0, 1]), int(f[1, 0, 0, 1])
    ((2, 2, 1, 2), 1, 1, 1)
    """
    events = _check_events(events)
    width, height, slice_us = _check_geometry(width, height, slice_us)
    dt, maxv = _count_dtype(dtype)
    if n_slices is not None and (
        isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 0
    ):
        raise ParameterError(f"n_slices must be a non-negative integer, got {n_slices!r}")
    if t_start is None:
        if events.shape[0] == 0:
            return np.zeros((0 if n_slices is None else int(n_slices), 2, height, width), dtype=dt)
        t_start = int(events["t"][0])
    t_start = int(t_start)
    default_n = n_slices is None
    if default_n:
        last = int(events["t"][-1]) if events.shape[0] else t_start - 1
        n_slices = max(0, (last - t_start) // slice_us + 1)
    n_slices = int(n_slices)
    out = np.empty(n_slices * 2 * height * width, dtype=dt)
    _, n_after = _run(events, out, t_start, slice_us, n_slices, width, height, maxv, 0)
    if default_n and n_after:
        # Unsorted input: the last event was not the latest one. Redo with the true extent.
        last = int(events["t"].max())
        n_slices = (last - t_start) // slice_us + 1
        out = np.empty(n_slices * 2 * height * width, dtype=dt)
        _run(events, out, t_start, slice_us, n_slices, width, height, maxv, 0)
    return out.reshape(n_slices, 2, height, width)


class _WindowGrid:
    """The window grid shared by :class:`EventBinner` and :class:`EventSlicer`."""

    slice_us: int
    _t0: Optional[int]

    @property
    def window_start(self) -> Optional[int]:
        """Start of the open window (None before the first event)."""
        return self._t0

    def _windows_before(self, t: int) -> int:
        """How many windows end at or before ``t`` (an event at ``t`` would close them); before the first
        event, ``t`` starts the grid and none do."""
        t = int(t)
        if self._t0 is None:
            self._t0 = t
            return 0
        return max(0, (t - self._t0) // self.slice_us)


class EventBinner(_WindowGrid):
    """Streaming Eq. (1) binner: feed time-sorted event batches, get each window once it is complete.

    Windows are ``[t_start + k*slice_us, t_start + (k+1)*slice_us)``; ``t_start`` defaults to the first
    event pushed. A window is complete when an event at or after its end arrives. Events older than the
    open window are dropped and counted in :attr:`late`. Windows without events are returned too (as one
    shared read-only zero frame), so the output is a gap-free sequence of windows.

    ``push`` followed by ``flush`` yields exactly the frames of :func:`event_frames` over all the events.

    Example
    -------
    >>> from microexp.events.dtype import make_events
    >>> b = EventBinner(width=4, height=3, slice_us=100)
    >>> b.push(make_events([1], [2], [1000], [1]))
    []
    >>> [(t0, t1, int(f.sum())) for t0, t1, f in b.push(make_events([0], [0], [1250], [0]))]
    [(1000, 1100, 1), (1100, 1200, 0)]
    >>> [(t0, t1, int(f.sum())) for t0, t1, f in b.flush()]
    [(1200, 1300, 1)]
    """

    #: the most windows allocated in one block; longer gaps are skipped with the shared zero frame
    MAX_BLOCK = 256

    def __init__(
        self, width: int, height: int, slice_us: int = DEFAULT_SLICE_US, t_start: Optional[int] = None, dtype=np.uint16
    ):
        self.width, self.height, self.slice_us = _check_geometry(width, height, slice_us)
        self.dtype, self._maxv = _count_dtype(dtype)
        self._t_start0 = None if t_start is None else int(t_start)
        self._zero = np.zeros((2, self.height, self.width), dtype=self.dtype)
        self._zero.flags.writeable = False
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push starts a new window grid (at ``t_start`` or its first event)."""
        self._t0: Optional[int] = self._t_start0
        self._partial = np.zeros((2, self.height, self.width), dtype=self.dtype)
        self._dirty = False
        self.late = 0

    def _bin_block(self, events, nb):
        """Bin events into windows [t0, t0 + nb*slice_us); window 0 continues the partial one."""
        w, h = self.width, self.height
        block = np.empty((nb, 2, h, w), dtype=self.dtype)
        block[0] = self._partial
        n_before, n_after = _run(events, block.reshape(-1), self._t0, self.slice_us, nb, w, h, self._maxv, 1)
        self.late += int(n_before)
        return block, n_after

    def _bin_open(self, events: np.ndarray) -> None:
        """Add ``events`` (none at or after the open window's end) into the open window, in place."""
        if events.shape[0] == 0:
            return
        n_before, _ = _run(
            events, self._partial.reshape(-1), self._t0, self.slice_us, 1, self.width, self.height, self._maxv, 1
        )
        self.late += int(n_before)
        self._dirty = self._dirty or n_before < events.shape[0]

    def push(self, events: np.ndarray) -> list:
        """Add events; return the windows they complete as a list of ``(t0, t1, frame)``.

        ``frame`` has shape (2, height, width); t0/t1 are the window's start and end (µs).
        """
        events = _check_events(events)
        if events.shape[0] == 0:
            return []
        s = self.slice_us
        if self._t0 is None:
            self._t0 = int(events["t"][0])
        t_max = int(events["t"].max())
        if t_max < self._t0 + s:
            # the usual push: nothing closes; bin straight into the open window (no block, no copy: for a
            # 1280 x 720 sensor a block copy is 3.7 MB per push)
            self._bin_open(events)
            return []
        t = events["t"]
        if t_max < self._t0 + 2 * s and bool(np.all(t[1:] >= t[:-1])):
            # the push that closes the open window and stays in the next one: finish the open window in
            # place, hand it out, start the next one (zero pages, mapped lazily) with the rest
            cut = int(np.searchsorted(t, self._t0 + s, side="left"))
            self._bin_open(events[:cut])
            done = [(self._t0, self._t0 + s, self._partial)]
            self._t0 += s
            self._partial = np.zeros((2, self.height, self.width), dtype=self.dtype)
            self._dirty = False
            self._bin_open(events[cut:])
            return done
        done = []
        while events.shape[0]:
            t = events["t"]
            last = int(t[-1])
            if last < self._t0:
                last = int(t.max())
                if last < self._t0:
                    self.late += int(events.shape[0])
                    break
            k_last = (last - self._t0) // s
            nb = min(k_last + 1, self.MAX_BLOCK)
            block, n_after = self._bin_block(events, nb)
            if n_after == 0 and nb == k_last + 1:
                # the usual case: all events placed, the last window stays open
                for k in range(nb - 1):
                    done.append((self._t0 + k * s, self._t0 + (k + 1) * s, block[k]))
                self._t0 += (nb - 1) * s
                self._partial = block[nb - 1]
                self._dirty = True
                break
            # events beyond the block (a long gap, or an unsorted batch): emit the whole block, go on
            for k in range(nb):
                done.append((self._t0 + k * s, self._t0 + (k + 1) * s, block[k]))
            self._t0 += nb * s
            self._partial = np.zeros((2, self.height, self.width), dtype=self.dtype)
            self._dirty = False
            events = events[events["t"] >= self._t0]
            if events.shape[0]:
                gap = (int(events["t"].min()) - self._t0) // s
                for k in range(gap):
                    done.append((self._t0 + k * s, self._t0 + (k + 1) * s, self._zero))
                self._t0 += gap * s
        return done

    def advance(self, t: int) -> list:
        """Time has reached ``t`` without events to bin (e.g. events removed by a noise filter): close the
        windows that end at or before ``t``, as an event at ``t`` would, and return them; before the first
        event, ``t`` starts the window grid."""
        k = self._windows_before(t)
        if k == 0:
            return []
        s = self.slice_us
        done = [(self._t0, self._t0 + s, self._partial if self._dirty else self._zero)]
        done += [(self._t0 + j * s, self._t0 + (j + 1) * s, self._zero) for j in range(1, k)]
        self._t0 += k * s
        self._partial = np.zeros((2, self.height, self.width), dtype=self.dtype)
        self._dirty = False
        return done

    def flush(self) -> list:
        """Return the open window (if any event fell into it) as ``[(t0, t1, frame)]`` and close it."""
        if not self._dirty or self._t0 is None:
            return []
        out = [(self._t0, self._t0 + self.slice_us, self._partial)]
        self._t0 += self.slice_us
        self._partial = np.zeros((2, self.height, self.width), dtype=self.dtype)
        self._dirty = False
        return out


_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)
_NO_EVENTS.flags.writeable = False


class EventSlicer(_WindowGrid):
    """The window grid of :class:`EventBinner`, handing out each window's events instead of its frame.

    Same rules: windows ``[t_start + k*slice_us, t_start + (k+1)*slice_us)``, ``t_start`` the first event
    pushed unless given; a window is complete when an event at or after its end arrives; events older than
    the open window are dropped and counted in :attr:`late`; windows without events come out as empty
    arrays. For any sequence of pushes, ``event_frames`` of each window's events equals the frame
    :class:`EventBinner` returns for that window (tested), and :meth:`advance` / :meth:`flush` behave alike.
    Batches need not be sorted (each is stably sorted by time when it is not). The arrays are views into
    the pushed batches: read-only use.

    Example
    -------
    >>> from microexp.events.dtype import make_events
    >>> s = EventSlicer(slice_us=100)
    >>> s.push(make_events([1], [2], [1000], [1]))
    []
    >>> [(t0, t1, len(e)) for t0, t1, e in s.push(make_events([0, 3], [0, 1], [1050, 1250], [0, 1]))]
    [(1000, 1100, 2), (1100, 1200, 0)]
    >>> [(t0, t1, len(e)) for t0, t1, e in s.flush()]
    [(1200, 1300, 1)]
    """

    def __init__(self, slice_us: int = DEFAULT_SLICE_US, t_start: Optional[int] = None):
        _, _, self.slice_us = _check_geometry(1, 1, slice_us)
        self._t_start0 = None if t_start is None else int(t_start)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push starts a new window grid (at ``t_start`` or its first event)."""
        self._t0: Optional[int] = self._t_start0
        self._open: list = []
        self.late = 0

    def _take_open(self, tail: Optional[np.ndarray] = None) -> np.ndarray:
        parts = self._open if tail is None or tail.shape[0] == 0 else self._open + [tail]
        self._open = []
        if not parts:
            return _NO_EVENTS
        return parts[0] if len(parts) == 1 else concat_events(parts)

    def push(self, events: np.ndarray) -> list:
        """Add events; return the windows they complete as a list of ``(t0, t1, events)``."""
        events = _check_events(events)
        if events.shape[0] == 0:
            return []
        t = events["t"]
        if t.shape[0] > 1 and not bool(np.all(t[1:] >= t[:-1])):
            events = take_events(events, np.argsort(t, kind="stable"))
            t = events["t"]
        if self._t0 is None:
            self._t0 = int(t[0])
        t0, s = self._t0, self.slice_us
        lo = int(np.searchsorted(t, t0, side="left"))
        if lo:
            self.late += lo
            events, t = events[lo:], t[lo:]
            if events.shape[0] == 0:
                return []
        k_last = (int(t[-1]) - t0) // s
        if k_last == 0:
            self._open.append(events)
            return []
        cuts = np.searchsorted(t, t0 + s * np.arange(1, k_last + 1, dtype=np.int64), side="left")
        done = [(t0, t0 + s, self._take_open(events[: int(cuts[0])]))]
        for k in range(1, k_last):
            a, b = int(cuts[k - 1]), int(cuts[k])
            done.append((t0 + k * s, t0 + (k + 1) * s, events[a:b] if b > a else _NO_EVENTS))
        self._t0 = t0 + k_last * s
        self._open = [events[int(cuts[-1]) :]]
        return done

    def advance(self, t: int) -> list:
        """Time has reached ``t`` without events: close the windows that end at or before ``t`` (as
        :meth:`EventBinner.advance`); before the first event, ``t`` starts the window grid."""
        k = self._windows_before(t)
        if k == 0:
            return []
        s = self.slice_us
        done = [(self._t0, self._t0 + s, self._take_open())]
        done += [(self._t0 + j * s, self._t0 + (j + 1) * s, _NO_EVENTS) for j in range(1, k)]
        self._t0 += k * s
        return done

    def flush(self) -> list:
        """Return the open window (if any event fell into it) as ``[(t0, t1, events)]`` and close it."""
        if not self._open or self._t0 is None:
            return []
        out = [(self._t0, self._t0 + self.slice_us, self._take_open())]
        self._t0 += self.slice_us
        return out
