"""The one event representation used everywhere in microexp.

Events are numpy structured arrays of :data:`EVENT_DTYPE`:

- ``x``, ``y``: pixel column and row (uint16), origin top-left;
- ``t``: time in microseconds (int64) on the clock the array says it is on (sensor time unless stated);
- ``p``: polarity as uint8, 1 = ON (brightness increase, the paper's p = +1), 0 = OFF (p = -1).

External trigger edges are kept apart in arrays of :data:`TRIGGER_DTYPE`.
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "u1")])
"""x, y (uint16), t (int64 µs), p (uint8: 1 = ON, 0 = OFF)."""

TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("id", "u1"), ("value", "u1")])
"""t (int64 µs), id (trigger channel), value (1 = rising edge, 0 = falling edge)."""

DEFAULT_SLICE_US = 33_000
"""The slice length used throughout microexp (33 ms, about 30 frames/s): the window of an Eq. (1) frame
(:mod:`microexp.events.frames`, which exports it too). Defined here, beside the event time unit, so that
modules which only need the number do not load numba."""


_RAW = np.dtype((np.void, EVENT_DTYPE.itemsize))


def _raw(a: np.ndarray) -> np.ndarray:
    return a.view(_RAW) if a.dtype == EVENT_DTYPE else a


def concat_events(parts) -> np.ndarray:
    """``np.concatenate`` of event arrays, fast: EVENT_DTYPE is a packed, unaligned 13-byte record, which numpy
    copies field by field; seen as raw 13-byte records the same copy is one memcpy, tens of times faster. Other
    dtypes go through ``np.concatenate`` unchanged."""
    parts = list(parts)
    if parts and all(isinstance(a, np.ndarray) and a.dtype == EVENT_DTYPE for a in parts):
        return np.concatenate([a.view(_RAW) for a in parts]).view(EVENT_DTYPE)
    return np.concatenate(parts)


def copy_events(a: np.ndarray) -> np.ndarray:
    """``a.copy()``, fast for EVENT_DTYPE (see :func:`concat_events`)."""
    return _raw(a).copy().view(a.dtype)


def take_events(a: np.ndarray, index) -> np.ndarray:
    """``a[index]`` for an integer or boolean index array, fast for EVENT_DTYPE (see :func:`concat_events`)."""
    return _raw(a)[index].view(a.dtype)


def make_events(x, y, t, p) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` array from four equally long sequences.

    Example
    -------
    >>> ev = make_events([1, 2], [3, 4], [10, 20], [1, 0])
    >>> int(ev["t"][1])
    20
    """
    x = np.asarray(x)
    n = x.shape[0]
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["x"] = x
    out["y"] = y
    out["t"] = t
    out["p"] = p
    return out


def empty_events(n: int = 0) -> np.ndarray:
    """An uninitialised event array of length ``n`` (zero-length by default)."""
    return np.empty(n, dtype=EVENT_DTYPE)


def empty_triggers(n: int = 0) -> np.ndarray:
    """An uninitialised trigger array of length ``n``."""
    return np.empty(n, dtype=TRIGGER_DTYPE)
