"""Decoded events cut into EventPacket-sized pieces, as the DAVIS346 node publishes them (no rclpy).

A piece covers one ``packet_time_us`` interval of sensor time at most (boundaries at the multiples of
``packet_time_us``, as :class:`microexp.events.evt3_split.Evt3Cutter` cuts EVT3 words) and holds at most
``max_events`` events; an interval with more is split into consecutive pieces of ``max_events``, the last one
shorter. Intervals without events give no piece.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def packet_slices(t: np.ndarray, packet_time_us: int, max_events: int) -> list[tuple[int, int]]:
    """The ``[a, b)`` index ranges of the pieces of time-sorted event times ``t``, in order."""
    if len(t) == 0:
        return []
    dt = int(packet_time_us)
    edges = np.searchsorted(t, np.arange(t[0] - t[0] % dt + dt, t[-1] + 1, dt))
    bounds = np.unique(np.concatenate(([0], edges, [len(t)])))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        for s in range(int(a), int(b), max_events):
            out.append((s, min(int(b), s + max_events)))
    return out


def cut_packets(events: np.ndarray, packet_time_us: int, max_events: int) -> Iterator[np.ndarray]:
    """The pieces of time-sorted ``events`` (EVENT_DTYPE), as views.

    Example
    -------
    >>> from microexp.events.dtype import make_events
    >>> ev = make_events([0] * 6, [0] * 6, [5, 10, 999, 1000, 1001, 3500], [1] * 6)
    >>> [p["t"].tolist() for p in cut_packets(ev, 1000, 2)]
    [[5, 10], [999], [1000, 1001], [3500]]
    """
    for a, b in packet_slices(events["t"], packet_time_us, max_events):
        yield events[a:b]
