"""Cutting an EVT3 word stream into EventPacket payloads by time and size, without decoding events.

The EVK4 node passes the sensor's EVT3 words through undecoded (as metavision_driver does); to batch them
by time it only needs the time of each word, which the TIME_HIGH / TIME_LOW words carry. This module
computes that time with a few vectorised passes and picks cut points at time words, so that every packet
but the first starts with a time word.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba as nb
import numpy as np

TIME_LOW = 0x6
TIME_HIGH = 0x8
WRAP_US = 1 << 24


@dataclass
class Evt3TimeState:
    """What the scan carries from one chunk of words to the next."""

    high: int = -1  # last TIME_HIGH value (12 bits), -1 = none seen yet
    low: int = 0  # last TIME_LOW value (12 bits)
    wraps: int = 0  # 24-bit wraps seen so far


@nb.njit(cache=True, nogil=True)
def _word_times(words, out, high, low, wraps):
    """One pass: out[i] = time in force after words[i]; returns the (high, low, wraps) carried on."""
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 12
        if typ == TIME_HIGH:
            v = w & 0xFFF
            if high >= 0 and v < high - 2048:  # the 24-bit counter wrapped
                wraps += 1
            high = v
            low = 0  # TIME_LOW bits count only after the TIME_HIGH they refine
        elif typ == TIME_LOW:
            low = w & 0xFFF
        out[i] = ((high << 12) | low) + wraps * WRAP_US if high >= 0 else -1
    return high, low, wraps


def word_times(words: np.ndarray, state: Evt3TimeState) -> np.ndarray:
    """Unwrapped time (µs, int64) in force after each word; -1 before the first TIME_HIGH. Updates ``state``."""
    words = np.ascontiguousarray(words, dtype=np.uint16)
    out = np.empty(len(words), np.int64)
    if len(words):
        state.high, state.low, state.wraps = (
            int(v) for v in _word_times(words, out, state.high, state.low, state.wraps)
        )
    return out


def split_evt3(
    words: np.ndarray, times: np.ndarray, packet_time_us: int = 1000, max_bytes: int = 1 << 20
) -> Iterator[tuple[int, int, int]]:
    """Yield ``(start, end, t_first_us)`` word ranges of consecutive packets of at most ``packet_time_us`` of
    sensor time and ``max_bytes`` bytes; ``times`` is :func:`word_times` of ``words``. Cuts fall on time
    words where possible."""
    words = np.asarray(words, dtype=np.uint16)
    t = times
    n = len(words)
    if n == 0:
        return
    typ = words >> 12
    # candidate cut points: the time words, with their (running-maximum) times for a binary search
    cut_idx = np.nonzero((typ == TIME_HIGH) | (typ == TIME_LOW))[0]
    cut_t = np.maximum.accumulate(t[cut_idx]) if len(cut_idx) else cut_idx
    max_words = max(1, max_bytes // 2)
    start = 0
    while start < n:
        t0 = int(t[start])
        end = min(n, start + max_words)
        if t0 >= 0 and len(cut_idx):
            boundary = t0 - (t0 % packet_time_us) + packet_time_us
            # first time word after start whose time reaches the packet's end
            k = max(int(np.searchsorted(cut_idx, start + 1)), int(np.searchsorted(cut_t, boundary)))
            if k < len(cut_idx) and cut_idx[k] < end:
                end = int(cut_idx[k])
        yield start, end, t0
        start = end


def trigger_words(words: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each EXT_TRIGGER word: a TIME_HIGH, TIME_LOW, EXT_TRIGGER triple (uint16) that decodes alone."""
    idx = np.nonzero((np.asarray(words) >> 12) == 0xA)[0]
    out = np.empty(3 * len(idx), np.uint16)
    t = np.maximum(times[idx], 0) % WRAP_US
    out[0::3] = (TIME_HIGH << 12) | ((t >> 12) & 0xFFF)
    out[1::3] = (TIME_LOW << 12) | (t & 0xFFF)
    out[2::3] = words[idx]
    return out


def trigger_triples(triggers: np.ndarray) -> np.ndarray:
    """For each edge of a TRIGGER_DTYPE array: TIME_HIGH, TIME_LOW, EXT_TRIGGER (uint16), time modulo 2**24 µs."""
    out = np.empty(3 * len(triggers), np.uint16)
    t = np.maximum(np.asarray(triggers["t"], np.int64), 0) % WRAP_US
    out[0::3] = (TIME_HIGH << 12) | ((t >> 12) & 0xFFF)
    out[1::3] = (TIME_LOW << 12) | (t & 0xFFF)
    out[2::3] = (
        0xA000 | ((np.asarray(triggers["id"], np.uint16) & 0xF) << 8) | (np.asarray(triggers["value"], np.uint16) & 1)
    )
    return out
