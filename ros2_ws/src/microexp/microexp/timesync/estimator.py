"""Online estimate of a sensor clock against ROS time: ``ros_ns ≈ a · sensor_us + b``.

The data
--------
Every message of a sensor gives a pair (sensor time s of its newest data, ROS arrival time r). The arrival
is the true ROS time of s plus a transport delay that is never negative: a fixed latency, one-sided jitter
(USB scheduling, driver batching, the executor) and rare outliers (a stalled transfer: much later; a
corrupted sensor stamp, e.g. an EVT3 time bit error: can look *earlier* than possible). Drift between the
sensor crystal and the host clock is tens of ppm and changes slowly.

The method: windowed lower envelope
-----------------------------------
Because delays are one-sided, the mapping is the *lower envelope* of the (s, r) cloud, not its mean: a
least-squares fit would carry the mean jitter (hundreds of µs to ms) as a bias and be pulled by every late
outlier. The estimator therefore fits the line that lies below all recent points and touches them as
closely as possible — the linear program of Moon, Skelly & Towsley ("Estimation and removal of clock skew
from network delay measurements", 1999), also the core of TICSync (Harrison & Newman, 2011). Its optimum
is the edge of the lower convex hull above the mean sensor time of the window, so it is found exactly by a
monotone-chain hull in O(n):

1. **Binning**: samples are grouped into ``bin_s`` bins of sensor time; each bin keeps only its least
   delayed sample (smallest ``r - a·s``). This compresses 100 Hz input to a few points per second without
   losing the envelope, and bounds the cost.
2. **Window**: the last ``window_s`` of bins are kept; the envelope line is refitted whenever a bin closes.
   The window is long enough to average the envelope noise into a drift error of a few ppm and short
   enough to follow thermal drift changes.
3. **Gating**: once locked, a sample more than ``early_gate_us`` *below* the line is impossible under
   one-sided delays and is rejected as an outlier (it would otherwise become a hull vertex and drag the
   line down); a sample more than ``late_gate_us`` above is counted as an outlier and ignored. Before
   the first lock, when there is no line to gate against, each bin contributes its *second* least delayed
   sample and the first fit discards bins that sit far below the median line (Theil-Sen slope).
4. **Re-lock**: ``relock_after`` consecutive rejections (early or late) mean the sensor clock jumped (a
   counter reset or a re-synchronisation) or the link changed for good; the estimator starts over.

What it estimates is the true mapping plus the *minimum* transport latency, which no one-way method can
separate from the offset; pass a known ``latency_us`` to subtract it. With 0.2-2 ms of jitter, ±100 ppm of
drift and 1 % outliers the mapping stays within 0.3 ms of the truth over a 10-minute session
(tests/test_timesync.py).

Reported: ``offset_ms`` (ROS minus sensor time at the newest sample), ``drift_ppm`` (how fast the sensor clock
runs relative to ROS time: ``1/a - 1``), ``jitter_us`` (exponential moving mean of accepted samples' delay
above the envelope), ``samples``, ``outliers``, ``locked``.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import numpy as np

from microexp.errors import ParameterError


def lower_hull(xs, ys) -> list[int]:
    """Indices of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[int] = []
    for i in range(len(xs)):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = (xs[a] - xs[o]) * (ys[i] - ys[o]) - (ys[a] - ys[o]) * (xs[i] - xs[o])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def envelope_line(xs, ys) -> tuple[float, float]:
    """(slope, intercept) of the line below all points that maximises its height at the mean x (the
    Moon et al. linear program), i.e. the lower-hull edge spanning the mean x."""
    n = len(xs)
    if n < 2:
        raise ParameterError("envelope_line needs at least two points")
    hull = lower_hull(xs, ys)
    x_mean = sum(xs) / n
    for k in range(len(hull) - 1):
        i, j = hull[k], hull[k + 1]
        if xs[j] <= xs[i]:  # sensor time went back (a stream that started again): not an edge
            continue
        if xs[j] >= x_mean or k == len(hull) - 2:
            slope = (ys[j] - ys[i]) / (xs[j] - xs[i])
            return slope, ys[i] - slope * xs[i]
    raise ParameterError("degenerate points for envelope_line")  # no two points with increasing x


def _theil_sen(xs, ys) -> float:
    xs, ys = np.asarray(xs), np.asarray(ys)
    i, j = np.triu_indices(len(xs), 1)
    dx = xs[j] - xs[i]
    ok = dx > 0
    return float(np.median((ys[j] - ys[i])[ok] / dx[ok]))


class ClockEstimator:
    """Online ``ros_ns ≈ a · sensor_us + b`` for one sensor (see the module docstring for the method).

    Parameters
    ----------
    window_s: length of the fitting window (sensor time).
    bin_s: bin length; one point per bin enters the fit.
    min_bins: bins needed before the first lock (``min_bins * bin_s`` seconds of data).
    early_gate_us: how far below the envelope a sample may fall before it is an outlier.
    late_gate_us: how far above the envelope a sample may arrive before it is an outlier.
    relock_after: consecutive outliers that trigger a restart (1 s at 100 Hz by default).
    latency_us: known minimum transport latency, subtracted from the mapping.
    max_drift_ppm: fits claiming a larger drift are refused (they come from bad data).

    Example
    -------
    >>> est = ClockEstimator()
    >>> for k in range(2000):                      # 20 s at 100 Hz, sensor 50 ppm fast, 5 ms offset
    ...     s = 10_000 * k
    ...     _ = est.update(s, int(1e12 + (s - 5000) / (1 + 50e-6) * 1000) + 300_000)   # +0.3 ms latency
    >>> est.locked, round(est.drift_ppm), abs(est.to_ros_ns(s) - (1e12 + (s - 5000) / (1 + 50e-6) * 1000)) < 400_000
    (True, 50, True)
    """

    def __init__(
        self,
        window_s: float = 30.0,
        bin_s: float = 0.25,
        min_bins: int = 8,
        early_gate_us: float = 500.0,
        late_gate_us: float = 50_000.0,
        relock_after: int = 100,
        latency_us: float = 0.0,
        max_drift_ppm: float = 2000.0,
    ):
        if not (0 < bin_s and window_s >= 4 * bin_s and min_bins >= 3):
            raise ParameterError("need bin_s > 0, window_s >= 4 * bin_s and min_bins >= 3")
        if early_gate_us <= 0 or late_gate_us <= 0 or relock_after < 1:
            raise ParameterError("early_gate_us and late_gate_us must be > 0 and relock_after >= 1")
        self.window_s = float(window_s)
        self.bin_us = float(bin_s) * 1e6
        self.min_bins = int(min_bins)
        self.early_gate_us = float(early_gate_us)
        self.late_gate_us = float(late_gate_us)
        self.relock_after = int(relock_after)
        self.latency_us = float(latency_us)
        self.max_drift_ppm = float(max_drift_ppm)
        self.samples = 0
        self.outliers = 0
        self.relocks = 0
        self.reset()

    def reset(self) -> None:
        """Forget the clock relation (keeps the samples/outliers counters)."""
        self._s0: Optional[int] = None
        self._a0: Optional[int] = None
        self._bins: deque = deque(maxlen=max(4, int(round(self.window_s * 1e6 / self.bin_us))))
        self._bin_index: Optional[int] = None
        self._bin_best: list = []  # up to two (key, x, y), least delayed first
        self._slope = 1.0  # µs of ROS per µs of sensor
        self._intercept: Optional[float] = None
        self.locked = False
        self._reject_run = 0
        self._jitter = 0.0
        self._last_x = 0.0

    # --------------------------------------------------------------------------------------- input
    def update(self, sensor_us: int, arrival_ns: int) -> bool:
        """Add one (sensor time µs, ROS arrival time ns) pair; False when it was rejected as an outlier."""
        self.samples += 1
        if self._s0 is None:
            self._s0, self._a0 = int(sensor_us), int(arrival_ns)
        x = float(int(sensor_us) - self._s0)
        y = (int(arrival_ns) - self._a0) / 1000.0
        if self.locked:
            r = y - (self._slope * x + self._intercept)
            if r < -self.early_gate_us or r > self.late_gate_us:
                self.outliers += 1
                self._reject_run += 1
                if self._reject_run >= self.relock_after:
                    self.relocks += 1
                    self.reset()
                    self._s0, self._a0 = int(sensor_us), int(arrival_ns)
                    self._add(0.0, 0.0)
                return False
            self._reject_run = 0
            self._jitter += 0.02 * (max(r, 0.0) - self._jitter)
        self._last_x = max(self._last_x, x)
        self._add(x, y)
        return True

    def _add(self, x: float, y: float) -> None:
        index = int(x // self.bin_us)
        if self._bin_index is not None and index != self._bin_index:
            self._close_bin()
        self._bin_index = index
        key = y - self._slope * x
        best = self._bin_best
        best.append((key, x, y))
        best.sort()
        del best[2:]

    def _close_bin(self) -> None:
        best = self._bin_best
        if best:
            # Before the first lock nothing gates outliers: a single early outlier per bin is survived by
            # taking the bin's second least delayed sample.
            pick = best[0] if self.locked or len(best) < 2 else best[1]
            self._bins.append((pick[1], pick[2]))
        self._bin_best = []
        if len(self._bins) >= self.min_bins:
            self._fit()

    def _fit(self) -> None:
        xs = [b[0] for b in self._bins]
        ys = [b[1] for b in self._bins]
        if not self.locked:
            # First fit: drop bins far below the robust (Theil-Sen) line for good; later bins are gated.
            slope0 = _theil_sen(xs, ys)
            resid = np.asarray(ys) - slope0 * np.asarray(xs)
            # "far" scales with the spread of the delays: under heavy one-sided jitter (a loaded host) the
            # least delayed bins sit well below the robust line, and they are the ones the envelope needs
            med = np.median(resid)
            spread = 1.4826 * np.median(np.abs(resid - med))
            keep = resid >= med - max(self.early_gate_us, 6.0 * spread)
            if keep.sum() < 3:
                return
            kept = [b for b, k in zip(self._bins, keep) if k]
            self._bins.clear()
            self._bins.extend(kept)
            xs = [b[0] for b in kept]
            ys = [b[1] for b in kept]
        try:
            slope, intercept = envelope_line(xs, ys)
        except ParameterError:  # no usable edge yet (sensor time did not advance): wait for more bins
            return
        if slope <= 0 or abs(1.0 / slope - 1.0) * 1e6 > self.max_drift_ppm:  # <= 0: a replay flat out
            return
        self._slope, self._intercept = slope, intercept
        self.locked = True

    # --------------------------------------------------------------------------------------- output
    def to_ros_ns(self, sensor_us):
        """ROS time (ns, int) of sensor time(s) ``sensor_us``. Before the first lock: slope 1 through the
        least delayed sample so far (``locked`` is False). Raises ParameterError before any sample."""
        if self._s0 is None:
            raise ParameterError("ClockEstimator.to_ros_ns before any update")
        slope, intercept = self._slope, self._intercept
        if intercept is None:
            candidates = [b[1] - b[0] for b in self._bins] + [c[2] - c[1] for c in self._bin_best]
            slope, intercept = 1.0, min(candidates)
        x = np.asarray(sensor_us, dtype=np.int64) - self._s0
        y_us = slope * x.astype(np.float64) + (intercept - self.latency_us)
        ns = self._a0 + np.round(y_us * 1000.0).astype(np.int64)
        return int(ns) if ns.ndim == 0 else ns

    @property
    def offset_ms(self) -> float:
        """ROS time minus sensor time at the newest sample (ms)."""
        if self._s0 is None:
            return float("nan")
        s = self._s0 + int(self._last_x)
        return (self.to_ros_ns(s) - s * 1000) / 1e6

    @property
    def drift_ppm(self) -> float:
        """How fast the sensor clock runs relative to ROS time (ppm; > 0 = sensor fast)."""
        return (1.0 / self._slope - 1.0) * 1e6 if self.locked else float("nan")

    @property
    def jitter_us(self) -> float:
        """Mean delay of accepted samples above the envelope (µs), exponentially weighted."""
        return float(self._jitter)

    def state(self) -> dict:
        """The reported quantities in one dict (for diagnostics messages)."""
        return dict(
            locked=self.locked,
            offset_ms=self.offset_ms,
            drift_ppm=self.drift_ppm,
            jitter_us=self.jitter_us,
            samples=self.samples,
            outliers=self.outliers,
            relocks=self.relocks,
        )
