"""Cutting decoded events into EventPacket pieces (microexp.events.packets), as the DAVIS346 node publishes them:
every event once, in order; no piece across a packet_time_us boundary of sensor time; at most max_events each,
split only where the interval holds more."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.events.dtype import make_events
from microexp.events.packets import cut_packets, packet_slices


def test_hand_example_and_empty_input():
    ev = make_events([0] * 6, [0] * 6, [5, 10, 999, 1000, 1001, 3500], [1] * 6)
    assert [p["t"].tolist() for p in cut_packets(ev, 1000, 2)] == [[5, 10], [999], [1000, 1001], [3500]]
    assert [p["t"].tolist() for p in cut_packets(ev, 1000, 100)] == [[5, 10, 999], [1000, 1001], [3500]]
    assert packet_slices(ev["t"][:0], 1000, 10) == []


@pytest.mark.parametrize("seed", range(20))
def test_pieces_are_the_events_of_each_interval_in_runs_of_max_events(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 3, 50, 4000]))
    dt = int(rng.choice([1, 7, 1000]))
    max_events = int(rng.choice([1, 2, 10, 100_000]))
    t = np.sort(rng.integers(0, 30 * dt, n)) + int(rng.integers(0, 10**9))
    ev = make_events(rng.integers(0, 346, n), rng.integers(0, 260, n), t, rng.integers(0, 2, n))
    pieces = list(cut_packets(ev, dt, max_events))
    assert np.concatenate(pieces).tobytes() == ev.tobytes()
    # independent computation: group the events by interval t // dt, then split each group into runs
    expected = []
    for k in np.unique(t // dt):
        idx = np.flatnonzero(t // dt == k)
        expected += [idx[i : i + max_events] for i in range(0, len(idx), max_events)]
    assert [(int(i[0]), int(i[-1]) + 1) for i in expected] == packet_slices(t, dt, max_events)
