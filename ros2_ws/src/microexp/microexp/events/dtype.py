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
