"""Simulated sensor clocks and USB transport, so that the rig exercises clock synchronisation.

Three times exist for every piece of data (ECOSYSTEM.md, "Time"):

- **true host time** ``h`` (s): when the light hit the sensor, on the host's clock;
- **sensor time** (µs): the camera's own counter, ``sensor_us = ((h - t0) * (1 + drift_ppm·1e-6)) · 1e6
  + offset_us`` (:class:`SensorClock`); the counter runs ``drift_ppm`` fast and started at an arbitrary
  ``offset_us``;
- **arrival time** (s): when the host receives it, ``h + latency + jitter`` (:class:`Transport`): a
  fixed latency, one-sided exponential jitter, and rare outliers (a stalled USB transfer or a scheduler
  hiccup) that add a large extra delay. Arrivals of one sensor never overtake each other (a FIFO).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microexp.errors import ParameterError


@dataclass(frozen=True)
class SensorClock:
    """``sensor_us = ((host_s - t0_s) * (1 + drift_ppm * 1e-6)) * 1e6 + offset_us``.

    Example
    -------
    >>> c = SensorClock(drift_ppm=100.0, offset_us=5000.0)
    >>> c.sensor_us(10.0)                 # 10 s of host time read 10.001 s on the sensor, plus 5 ms
    10006000
    >>> round(c.host_s(c.sensor_us(10.0)), 6)
    10.0
    """

    drift_ppm: float = 0.0
    offset_us: float = 0.0
    t0_s: float = 0.0

    def __post_init__(self):
        if abs(self.drift_ppm) > 1e4:
            raise ParameterError(f"drift_ppm must be within ±10000, got {self.drift_ppm}")

    @property
    def rate(self) -> float:
        """Sensor seconds per host second."""
        return 1.0 + self.drift_ppm * 1e-6

    def sensor_us_float(self, host_s):
        """Sensor time (µs, float) of true host time(s) ``host_s``."""
        v = (np.asarray(host_s, dtype=np.float64) - self.t0_s) * self.rate * 1e6 + self.offset_us
        return float(v) if v.ndim == 0 else v

    def sensor_us(self, host_s):
        """Sensor time as the camera reports it: whole microseconds (int64), rounded down."""
        v = np.floor(np.asarray(self.sensor_us_float(host_s)) + 1e-6).astype(np.int64)  # 1e-6: float round-off
        return int(v) if v.ndim == 0 else v

    def host_s(self, sensor_us):
        """True host time (s) at which the sensor counter read ``sensor_us``."""
        v = (np.asarray(sensor_us, dtype=np.float64) - self.offset_us) / (self.rate * 1e6) + self.t0_s
        return float(v) if v.ndim == 0 else v


@dataclass(frozen=True)
class Transport:
    """Delivery delay of one sensor's data to the host.

    latency_s: fixed minimum delay; jitter_s: mean of the one-sided exponential extra delay;
    outlier_prob: chance per message of an outlier, delayed by a further uniform
    [outlier_min_s, outlier_max_s].
    """

    latency_s: float = 0.001
    jitter_s: float = 0.0005
    outlier_prob: float = 0.005
    outlier_min_s: float = 0.010
    outlier_max_s: float = 0.060

    def __post_init__(self):
        if min(self.latency_s, self.jitter_s, self.outlier_min_s) < 0 or self.outlier_max_s < self.outlier_min_s:
            raise ParameterError("Transport delays must be >= 0 and outlier_max_s >= outlier_min_s")
        if not 0 <= self.outlier_prob <= 1:
            raise ParameterError(f"outlier_prob must be in [0, 1], got {self.outlier_prob}")

    def delays(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent delays (s)."""
        d = self.latency_s + (rng.exponential(self.jitter_s, n) if self.jitter_s > 0 else np.zeros(n))
        out = rng.random(n) < self.outlier_prob
        d[out] += rng.uniform(self.outlier_min_s, self.outlier_max_s, int(out.sum()))
        return d


class Link:
    """One sensor's stream of deliveries: arrival times that include :class:`Transport` delays and never
    overtake the previous arrival of the same sensor. Deterministic under ``seed`` (an int or a tuple of
    non-negative ints)."""

    def __init__(self, transport: Transport, seed=0):
        self.transport = transport
        material = [int(v) & 0xFFFFFFFF for v in (seed if isinstance(seed, (tuple, list)) else (seed,))]
        self._rng = np.random.default_rng(material + [0x71D])
        self._last = -np.inf

    def arrival_s(self, ready_host_s: float) -> float:
        """Host arrival time of a message whose data is complete at true host time ``ready_host_s``."""
        t = max(float(ready_host_s) + float(self.transport.delays(1, self._rng)[0]), self._last)
        self._last = t
        return t
