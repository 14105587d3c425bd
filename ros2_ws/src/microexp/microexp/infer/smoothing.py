"""Small numeric helpers of the live pipeline: AU probabilities from the SNN output, the horizon smoother and
latency statistics (no rclpy, no torch at import time)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Iterable, Optional

import numpy as np

from microexp.errors import ParameterError

__all__ = ["au_probabilities", "top_k", "HorizonSmoother", "LatencyStats"]


def au_probabilities(running_mean, temperature: float = 1.0) -> np.ndarray:
    """Per-class probabilities of one window: ``softmax(m / temperature)`` in float32.

    ``m`` is what :meth:`microexp.models.AUSpikingNet.step` returns, the class activations (fraction of voting
    neurons that spiked, each in [0, 1]) averaged over every step since the last reset, i.e. the running
    time average of the model output; at the T-th window after a reset it equals ``model(frames[:T])`` of the
    multi-step mode. ``temperature`` 1 is the plain softmax of that average (the definition of
    ``AUPrediction.probabilities``); lower values sharpen it. The ranking (top-3) never depends on it.

    Accepts a torch tensor or numpy array of shape (21,) or (1, 21).

    Example
    -------
    >>> p = au_probabilities(np.zeros(21))
    >>> p.dtype, round(float(p.sum()), 6), round(float(p[0]), 6)
    (dtype('float32'), 1.0, 0.047619)
    """
    if not temperature > 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}")
    if hasattr(running_mean, "detach"):
        import torch

        m = running_mean.detach().reshape(-1).to(torch.float32)
        return torch.softmax(m / float(temperature), dim=0).cpu().numpy()
    m = np.asarray(running_mean, dtype=np.float32).reshape(-1) / np.float32(temperature)
    e = np.exp(m - m.max())
    return (e / e.sum()).astype(np.float32)


def top_k(probabilities: np.ndarray, k: int = 3) -> tuple[int, ...]:
    """Indices of the ``k`` largest values, best first; ties go to the lower class index."""
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
    return tuple(int(i) for i in order[:k])


class HorizonSmoother:
    """The smoothed decision: the mean of the last ``horizon`` windows' probability vectors.

    Reset together with the SNN state (stream gaps, face loss, segment boundaries), so it never mixes windows
    of two different clips; right after a reset it averages the windows seen so far (``count`` < horizon).
    """

    def __init__(self, horizon: int = 10):
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ParameterError(f"horizon must be an integer >= 1, got {horizon!r}")
        self.horizon = int(horizon)
        self._window: deque = deque(maxlen=self.horizon)

    def reset(self) -> None:
        self._window.clear()

    @property
    def count(self) -> int:
        """Windows in the current average."""
        return len(self._window)

    def push(self, probabilities: np.ndarray) -> np.ndarray:
        """Add one window's probabilities; return the mean over the horizon (float32)."""
        self._window.append(np.asarray(probabilities, dtype=np.float32))
        return np.mean(np.stack(self._window), axis=0, dtype=np.float64).astype(np.float32)


class LatencyStats:
    """Recent samples (ms) per named stage, thread-safe; percentiles for diagnostics and benchmarks."""

    def __init__(self, maxlen: int = 2000):
        self.maxlen = int(maxlen)
        self._samples: dict[str, deque] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            d = self._samples.get(stage)
            if d is None:
                d = self._samples[stage] = deque(maxlen=self.maxlen)
            d.append(float(ms))

    def add_all(self, values: dict) -> None:
        for stage, ms in values.items():
            self.add(stage, ms)

    def samples(self, stage: str) -> np.ndarray:
        with self._lock:
            return np.array(self._samples.get(stage, ()), dtype=np.float64)

    @property
    def stages(self) -> list[str]:
        with self._lock:
            return list(self._samples)

    def percentiles(self, stage: str, qs: Iterable[float] = (50, 99)) -> Optional[tuple[float, ...]]:
        """The percentiles of a stage's recent samples, or None when it has none."""
        s = self.samples(stage)
        if s.size == 0:
            return None
        return tuple(float(v) for v in np.percentile(s, list(qs)))

    def summary(self) -> dict:
        """``{stage: {"p50": ms, "p99": ms, "n": samples}}`` for every stage."""
        out = {}
        for stage in self.stages:
            s = self.samples(stage)
            if s.size:
                p50, p99 = np.percentile(s, [50, 99])
                out[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "n": int(s.size)}
        return out
