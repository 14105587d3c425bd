"""Event activity of a face box over time: how many events a window holds inside the box, and where a movement
peaks. The dataset builder centres its training windows with :func:`movement_peak`; the live spotter
(:mod:`microexp.infer.spotting`) centres its verdict windows with the same rule."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["box_count", "movement_peak"]


def box_count(events: np.ndarray, px: Optional[tuple]) -> int:
    """Events of polarity 0 or 1 inside the integer pixel box ``px`` = (x0, y0, x1, y1) (x1, y1 exclusive);
    0 for None or no events."""
    if px is None or events.shape[0] == 0:
        return 0
    x, y, p = events["x"], events["y"], events["p"]
    return int(np.count_nonzero((x >= px[0]) & (x < px[2]) & (y >= px[1]) & (y < px[3]) & (p < 2)))


def movement_peak(activity: Sequence[float], width: int = 5) -> int:
    """Index where activity rises most above its median (a box filter of ``width`` slices over the excess):
    the centre of a movement, found without ground truth."""
    a = np.asarray(activity, dtype=np.float64)
    if len(a) == 0:
        return 0
    excess = np.clip(a - np.median(a), 0.0, None)
    k = max(1, min(int(width), len(a)))
    smooth = np.convolve(excess, np.ones(k) / k, mode="same")
    return int(np.argmax(smooth))
