"""Synthetic event streams and the EventPackets a driver would send for them."""

from __future__ import annotations

import numpy as np

from microexp.events.codecs import make_encoder
from microexp.events.dtype import EVENT_DTYPE
from microexp.events.stream import Packet

DAVIS = (346, 260)  # DAVIS346 array: width, height


def blob_events(
    width: int, height: int, duration_us: int, rate_hz: float, seed: int = 0, t0_us: int = 1_000_000, pauses=()
) -> np.ndarray:
    """A deterministic face-sized blob moving on a Lissajous path, plus 10 % background events; time-sorted.
    ``pauses`` = ((start_us, length_us), ...) relative to t0: no events there."""
    rng = np.random.default_rng(seed)
    n = int(rate_hz * duration_us / 1e6)
    t = np.sort(rng.integers(0, duration_us, n))
    for start, length in pauses:
        t = t[(t < start) | (t >= start + length)]
    n = t.shape[0]
    s = t / 1e6
    cx = width / 2 + width / 5 * np.sin(2 * np.pi * 1.3 * s)
    cy = height / 2 + height / 7 * np.cos(2 * np.pi * 0.9 * s)
    noise = rng.random(n) < 0.1
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"] = t + t0_us
    ev["x"] = np.clip(np.where(noise, rng.uniform(0, width, n), cx + rng.normal(0, height / 10, n)), 0, width - 1)
    ev["y"] = np.clip(np.where(noise, rng.uniform(0, height, n), cy + rng.normal(0, height / 10, n)), 0, height - 1)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def packets(encoding, width, height, events, per_packet_us=1000, seq0=0, frame_id="cam", stamped=True):
    """The EventPackets a driver would send for ``events``: one per ``per_packet_us``, consecutive seq.
    ``stamped``: each packet's stamp_ns is its first event's time; otherwise 0 (no stamp)."""
    enc = make_encoder(encoding, width, height)
    bins = (events["t"] - events["t"][0]) // per_packet_us
    out = []
    for k, b in enumerate(np.unique(bins)):
        chunk = events[bins == b]
        payload, time_base = enc.encode(chunk)
        out.append(
            Packet(
                encoding,
                width,
                height,
                seq0 + k,
                bytes(payload),
                int(time_base),
                stamp_ns=1_000 * int(chunk["t"][0]) if stamped else 0,
                frame_id=frame_id,
            )
        )
    return out
