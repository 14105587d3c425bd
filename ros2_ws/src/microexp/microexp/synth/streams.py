"""Synthetic event streams for benchmarks and tests: arrays of EVENT_DTYPE events with known statistics.

- :func:`uniform_events`: uniform random pixels, polarities and times over a span;
- :func:`face_like_events`: edge points of a head ellipse, two eyes and a mouth that move, plus noise;
- :func:`row_run_events`: events around the sensor centre, optionally in runs along a row (a moving edge);
- :func:`blob_packets`: a face-sized Gaussian blob on a Lissajous path plus background, cut into packets;
- :func:`rig_packets`: the synthetic rig's own face events (:class:`~microexp.synth.rig.SyntheticRig`),
  cut into packets.
"""

from __future__ import annotations

import numpy as np

from microexp.events.dtype import EVENT_DTYPE, make_events
from microexp.synth.rig import SyntheticRig

__all__ = [
    "PACKET_US",
    "RIG_AUS",
    "blob_packets",
    "face_like_events",
    "rig_packets",
    "row_run_events",
    "uniform_events",
]

#: sensor time covered by one packet of :func:`blob_packets` and :func:`rig_packets`
PACKET_US = 1000
#: the AUs :func:`rig_packets` performs, in turn
RIG_AUS = ("AU12", "AU26", "AU52", "AU4", "AU45", "AU17", "AU53", "AU9")


def uniform_events(n: int, width: int = 346, height: int = 260, span_us: int = 10_000_000, seed: int = 0) -> np.ndarray:
    """n time-sorted events at uniform random pixels of a ``width`` x ``height`` sensor over ``span_us``
    (first at 0 µs, last at ``span_us - 1``)."""
    rng = np.random.default_rng(seed)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    t = np.sort(rng.integers(0, span_us, n))
    if n:
        t[0], t[-1] = 0, span_us - 1
    ev["t"] = t
    ev["x"] = rng.integers(0, width, n)
    ev["y"] = rng.integers(0, height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def face_like_events(n: int, seed: int = 0, width: int = 1280, height: int = 720) -> np.ndarray:
    """Face-like events on a 1280x720 layout: edge points of a head ellipse, two eyes and a mouth that move,
    plus 5% noise over ``width`` x ``height``; from 1 s on, in bursts of equal time (as the sensor reads rows)."""
    rng = np.random.default_rng(seed)
    per_step = 2000
    steps = max(1, -(-n // per_step))
    out = np.empty(steps * per_step, dtype=EVENT_DTYPE)
    k = 0
    for s in range(steps):
        ang = rng.uniform(0, 2 * np.pi, per_step)
        part = rng.choice(4, per_step, p=[0.55, 0.15, 0.15, 0.15])
        cx = np.select([part == 0, part == 1, part == 2], [640, 560, 720], 640) + 8 * np.sin(s / 50)
        cy = np.select([part == 0, part == 1, part == 2], [360, 300, 300], 450) + 4 * np.cos(s / 70)
        rx = np.select([part == 0, part == 1, part == 2], [220, 30, 30], 60 + 10 * np.sin(s / 20))
        ry = np.select([part == 0, part == 1, part == 2], [290, 12, 12], 15)
        x = cx + rx * np.cos(ang) + rng.normal(0, 1.5, per_step)
        y = cy + ry * np.sin(ang) + rng.normal(0, 1.5, per_step)
        noise = rng.random(per_step) < 0.05
        x[noise] = rng.uniform(0, width, noise.sum())
        y[noise] = rng.uniform(0, height, noise.sum())
        t = 1_000_000 + s * 200 + np.sort(rng.integers(0, 200, per_step))
        t = (t // 8) * 8  # events come in bursts of equal time, as the sensor reads rows
        chunk = out[k : k + per_step]
        chunk["x"] = np.clip(x, 0, width - 1)
        chunk["y"] = np.clip(y, 0, height - 1)
        chunk["t"] = t
        chunk["p"] = np.sin(ang + s / 30) > 0
        k += per_step
    out = out[:n]
    return out[np.lexsort((out["x"], out["y"], out["t"]))]


def row_run_events(n: int, width: int, height: int, duration_us: int, seed: int = 0, run: int = 1) -> np.ndarray:
    """``n`` sorted events over ``duration_us`` around the sensor centre; with ``run`` > 1 they come in runs of
    neighbouring pixels on a row sharing time and polarity, as a moving edge at high event rates makes them
    (what EVT3 vector words encode compactly)."""
    rng = np.random.default_rng(seed)
    m = -(-n // run)
    t = np.repeat(np.sort(rng.integers(0, duration_us, m)).astype(np.int64) + 1_000, run)[:n]
    x0 = rng.normal(width / 2, width / 8, m).clip(0, width - run - 1).astype(np.int64)
    x = (np.repeat(x0, run) + np.tile(np.arange(run), m))[:n].astype(np.uint16)
    y = np.repeat(rng.normal(height / 2, height / 8, m).clip(0, height - 1).astype(np.uint16), run)[:n]
    p = np.repeat(rng.integers(0, 2, m), run)[:n]
    return make_events(x, y, t, p)


def blob_packets(width: int, height: int, rate_mev_s: float, seconds: float, t0_us: int, seed: int = 0):
    """Time-sorted events of ``seconds``, one EVENT_DTYPE array per packet of PACKET_US (a generator): a
    face-sized blob (Gaussian, sigma = 1/12 of the sensor height) moving on a Lissajous path, plus 20 % uniform
    background activity, random polarities, at ``rate_mev_s``."""
    rng = np.random.default_rng(seed)
    per_packet = max(1, int(round(rate_mev_s * 1e6 * PACKET_US / 1e6)))
    sigma = height / 12.0
    for k in range(int(round(seconds * 1e6 / PACKET_US))):
        start = t0_us + k * PACKET_US
        t = np.sort(rng.integers(start, start + PACKET_US, per_packet))
        s = t / 1e6
        cx = width / 2 + width / 6 * np.sin(2 * np.pi * 0.7 * s)
        cy = height / 2 + height / 8 * np.sin(2 * np.pi * 1.1 * s)
        ev = np.empty(per_packet, dtype=EVENT_DTYPE)
        ev["t"] = t
        noise = rng.random(per_packet) < 0.2
        x = np.where(noise, rng.uniform(0, width, per_packet), cx + rng.normal(0, sigma, per_packet))
        y = np.where(noise, rng.uniform(0, height, per_packet), cy + rng.normal(0, sigma, per_packet))
        ev["x"] = np.clip(x, 0, width - 1)
        ev["y"] = np.clip(y, 0, height - 1)
        ev["p"] = rng.integers(0, 2, per_packet)
        yield ev


def rig_packets(sensor: str, seconds: float, t0_us: int, seed: int = 0):
    """The synthetic rig's own events for ``sensor`` (:class:`microexp.synth.rig.SyntheticRig`, subject 0):
    clips of the AUs of ``RIG_AUS`` back to back (starting from ``seed``), shifted to start at ``t0_us``,
    covering ``seconds``, cut into packets of PACKET_US; the event rate is the rig's (a face performing AUs
    at the rig's illumination), not a chosen one."""
    rig = SyntheticRig(subjects=1, seed=seed, sensors=(sensor,))
    t_end = t0_us + int(round(seconds * 1e6))
    offset, k = t0_us, 0
    while offset < t_end:
        ev = rig.clip(0, RIG_AUS[(seed + k) % len(RIG_AUS)], trial=k).events(sensor).copy()
        k += 1
        if not len(ev):
            continue
        span = int(rig.duration_s * 1e6)
        ev["t"] = ev["t"] - ev["t"][0] + offset
        ev = ev[ev["t"] < min(offset + span, t_end)]
        for start in range(offset, min(offset + span, t_end), PACKET_US):
            lo, hi = np.searchsorted(ev["t"], [start, start + PACKET_US])
            if hi > lo:
                yield ev[lo:hi]
        offset += span
