"""Approximate-time pairing of two frame streams (DAVIS APS ~40 fps with webcam 60 fps).

ROS 2's ``message_filters.ApproximateTimeSynchronizer`` is not part of the pip-installed ROS 2 this
project runs on (see /work/shared/ROS2_PIP.md), and the pure core must not depend on rclpy anyway, so this
module re-implements the semantics of its Python implementation for two inputs:

- each input keeps a queue of at most ``queue_size`` messages keyed by stamp (the oldest is dropped when
  full, and counted);
- when a message arrives, the other queue is searched for the stamp closest to it; if the two are at most
  ``slop`` apart, the pair is emitted and both messages leave their queues; otherwise the new message
  waits in its queue for a later partner;
- every message is used at most once, and pairing is decided in arrival order (so it works live).

Like the original it is greedy, not globally optimal: a message pairs with the best partner *already
there*. With 40 and 60 fps and a slop of half a webcam period (8.3 ms) every APS frame finds a partner,
and the stamps differ by 0 or 8.3 ms in turn (median about 4 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from microexp.errors import ParameterError


@dataclass(frozen=True)
class Pair:
    """Two matched messages; ``delta_ns = stamp_b - stamp_a``."""

    stamp_a: int
    stamp_b: int
    item_a: Any
    item_b: Any

    @property
    def delta_ns(self) -> int:
        return self.stamp_b - self.stamp_a


class ApproximatePairer:
    """Live pairing of two stamped streams (0 = "a", 1 = "b") within ``slop_ns``; see module docstring.

    Example
    -------
    >>> p = ApproximatePairer(slop_ns=5_000_000)
    >>> p.add(0, 1_000_000, "aps0")
    []
    >>> [(x.item_a, x.item_b, x.delta_ns) for x in p.add(1, 3_000_000, "cam0")]
    [('aps0', 'cam0', 2000000)]
    """

    def __init__(self, slop_ns: int, queue_size: int = 10):
        if slop_ns < 0 or queue_size < 1:
            raise ParameterError(f"need slop_ns >= 0 and queue_size >= 1, got {slop_ns}, {queue_size}")
        self.slop_ns = int(slop_ns)
        self.queue_size = int(queue_size)
        self._queues: list[dict] = [{}, {}]
        self.dropped = [0, 0]
        self.pairs = 0

    def add(self, stream: int, stamp_ns: int, item: Any = None) -> list[Pair]:
        """Offer one message of ``stream`` (0 or 1); returns the pairs it completed (zero or one)."""
        if stream not in (0, 1):
            raise ParameterError(f"stream must be 0 or 1, got {stream!r}")
        stamp = int(stamp_ns)
        mine, other = self._queues[stream], self._queues[1 - stream]
        mine[stamp] = item
        while len(mine) > self.queue_size:
            del mine[min(mine)]
            self.dropped[stream] += 1
        if stamp not in mine:
            return []
        best: Optional[int] = None
        for s in other:
            d = abs(s - stamp)
            if d <= self.slop_ns and (best is None or d < abs(best - stamp)):
                best = s
        if best is None:
            return []
        item_mine = mine.pop(stamp)
        item_other = other.pop(best)
        self.pairs += 1
        if stream == 0:
            return [Pair(stamp, best, item_mine, item_other)]
        return [Pair(best, stamp, item_other, item_mine)]


@dataclass(frozen=True)
class PairingResult:
    """Offline pairing: ``pairs`` (n, 2) indices into stream a and b, ``deltas_ns`` (b - a stamps),
    ``median_abs_delta_ns``, and the messages dropped from full queues."""

    pairs: np.ndarray
    deltas_ns: np.ndarray
    median_abs_delta_ns: float
    dropped: tuple


def pair_streams(
    stamps_a: Sequence[int],
    stamps_b: Sequence[int],
    slop_ns: int,
    queue_size: int = 10,
    arrivals_a: Optional[Sequence[float]] = None,
    arrivals_b: Optional[Sequence[float]] = None,
) -> PairingResult:
    """Pair two recorded stamp sequences (ns) as :class:`ApproximatePairer` would have live, feeding the
    messages in arrival order (``arrivals_*``, any unit; by stamp when not given; ties: stream a first).

    Example
    -------
    >>> r = pair_streams([0, 25_000_000, 50_000_000], [0, 16_666_667, 33_333_333, 50_000_000], 8_500_000)
    >>> r.pairs.tolist(), r.median_abs_delta_ns
    ([[0, 0], [1, 1], [2, 3]], 0.0)
    """
    a = np.asarray(stamps_a, dtype=np.int64)
    b = np.asarray(stamps_b, dtype=np.int64)
    arr_a = a if arrivals_a is None else np.asarray(arrivals_a, dtype=np.float64)
    arr_b = b if arrivals_b is None else np.asarray(arrivals_b, dtype=np.float64)
    if len(arr_a) != len(a) or len(arr_b) != len(b):
        raise ParameterError("arrivals must have one entry per stamp")
    order = sorted([(float(t), 0, i) for i, t in enumerate(arr_a)] + [(float(t), 1, i) for i, t in enumerate(arr_b)])
    pairer = ApproximatePairer(slop_ns, queue_size)
    found = []
    for _, stream, i in order:
        stamp = a[i] if stream == 0 else b[i]
        for p in pairer.add(stream, int(stamp), i):
            found.append((p.item_a, p.item_b))
    pairs = np.asarray(found, dtype=np.int64).reshape(-1, 2)
    deltas = (b[pairs[:, 1]] - a[pairs[:, 0]]) if len(pairs) else np.zeros(0, np.int64)
    median = float(np.median(np.abs(deltas))) if len(deltas) else float("nan")
    return PairingResult(pairs, deltas, median, tuple(pairer.dropped))
