"""Cutting an EVT3 word stream into EventPacket payloads by time and size, without decoding events.

The EVK4 node passes the sensor's EVT3 words through undecoded (as metavision_driver does); to batch them
by time it only needs the time of each word, which the TIME_HIGH / TIME_LOW words carry. This module
computes that time with a few vectorised passes and picks cut points at time words, so that every packet
but the first starts with a time word.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

TIME_LOW = 0x6
TIME_HIGH = 0x8
WRAP_US = 1 << 24


@dataclass
class Evt3TimeState:
    """What the scan carries from one chunk of words to the next."""

    high: int = -1          # last TIME_HIGH value (12 bits), -1 = none seen yet
    low: int = 0            # last TIME_LOW value (12 bits)
    wraps: int = 0          # 24-bit wraps seen so far


def word_times(words: np.ndarray, state: Evt3TimeState) -> np.ndarray:
    """Unwrapped time (µs, int64) in force after each word; -1 before the first TIME_HIGH. Updates ``state``."""
    words = np.asarray(words, dtype=np.uint16)
    n = len(words)
    if n == 0:
        return np.empty(0, np.int64)
    typ = words >> 12
    val = (words & 0x0FFF).astype(np.int64)
    idx = np.arange(n)
    is_high = typ == TIME_HIGH
    is_low = typ == TIME_LOW
    # forward-fill the last TIME_HIGH / TIME_LOW value
    hi_pos = np.maximum.accumulate(np.where(is_high, idx, -1))
    lo_pos = np.maximum.accumulate(np.where(is_low, idx, -1))
    high = np.where(hi_pos >= 0, val[np.maximum(hi_pos, 0)], state.high)
    # TIME_LOW bits count only after the TIME_HIGH they refine: a new TIME_HIGH starts its period at low = 0
    low = np.where(lo_pos > hi_pos, val[np.maximum(lo_pos, 0)], np.where(hi_pos >= 0, 0, state.low))
    # a TIME_HIGH that goes back by more than half its range is a wrap of the 24-bit counter
    hv = val[is_high]
    prev = np.concatenate(([state.high], hv[:-1])) if len(hv) else hv
    wrap_at = (prev >= 0) & (hv < prev - 2048)
    wraps_per_high = np.cumsum(wrap_at)
    wraps = np.zeros(n, np.int64)
    if len(hv):
        hi_rank = np.cumsum(is_high) - 1  # index into hv of the last TIME_HIGH at or before each word
        wraps = np.where(hi_rank >= 0, wraps_per_high[np.maximum(hi_rank, 0)], 0)
    wraps = wraps + state.wraps
    t = np.where(high >= 0, ((high << 12) | low) + wraps * WRAP_US, -1)
    state.high = int(high[-1])
    state.low = int(low[-1])
    state.wraps = int(wraps[-1])
    return t


def split_evt3(words: np.ndarray, times: np.ndarray, packet_time_us: int = 1000,
               max_bytes: int = 1 << 20) -> Iterator[tuple[int, int, int]]:
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
    out[2::3] = 0xA000 | ((np.asarray(triggers["id"], np.uint16) & 0xF) << 8) | (np.asarray(triggers["value"], np.uint16) & 1)
    return out
