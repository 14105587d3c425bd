"""Cutting an EVT3 word stream into EventPacket payloads by time and size, without decoding events.

The EVK4 node passes the sensor's EVT3 words through undecoded (as metavision_driver does), from a RAW file
or a camera; to batch them by time it only needs the time of each word, which the TIME_HIGH / TIME_LOW words
carry. :class:`Evt3Cutter` finds the cut points in one pass per piece of the stream, at time words, so that
every packet but the first starts with a time word; :func:`word_times` gives the time of every word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from microexp.events.evt3 import _POP, _VMASK

TIME_LOW = 0x6
TIME_HIGH = 0x8
WRAP_US = 1 << 24
# a file is cut in pieces of this many words (4 MB, the most a device read returns)
PIECE_WORDS = 2 << 20


@dataclass
class Evt3TimeState:
    """What the scan carries from one chunk of words to the next."""

    high: int = -1  # last TIME_HIGH value (12 bits), -1 = none seen yet
    low: int = 0  # last TIME_LOW value (12 bits), 0 after a TIME_HIGH
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
            low = 0  # a lower bound until the TIME_LOW that refines it
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


# cutter state slots (int64): time scan, running maximum of the time words' times, the open packet
_HIGH, _LOW, _WRAPS, _RUNMAX, _CUR, _LEN, _T0, _BOUND, _EVENTS = range(9)


def _new_state() -> np.ndarray:
    st = np.zeros(9, np.int64)
    st[_HIGH] = st[_RUNMAX] = st[_CUR] = st[_T0] = -1
    return st


@nb.njit(cache=True, nogil=True)
def _cut_words(words, st, packet_us, max_words, cuts, t0s, tlasts, trig_at, trig_t):
    """One pass over ``words`` that continue the stream described by ``st`` (updated in place).

    A packet opens at a word (its ``t0`` = the time in force after that word) and is cut before the first
    later time word whose running-maximum time reaches the end of ``t0``'s ``packet_us`` interval, or after
    ``max_words`` words; a packet that opened before the first TIME_HIGH is cut at the first timed word.
    Writes for each cut inside ``words``: its index (``cuts``), the new packet's ``t0`` (``t0s``) and the
    closed packet's last time (``tlasts``); for each EXT_TRIGGER word its index and time. Returns (cuts,
    triggers, t0 of the packet open at words[0])."""
    high = st[_HIGH]
    low = st[_LOW]
    wraps = st[_WRAPS]
    runmax = st[_RUNMAX]
    cur = st[_CUR]
    ln = st[_LEN]
    t0 = st[_T0]
    bound = st[_BOUND]
    events = st[_EVENTS]
    nc = 0
    nt = 0
    first_t0 = t0
    for i in range(words.shape[0]):
        w = np.int64(words[i])
        typ = w >> 12
        timed = False
        if typ == TIME_HIGH:
            v = w & 0xFFF
            if high >= 0 and v < high - 2048:  # the 24-bit counter wrapped
                wraps += 1
            high = v
            low = 0  # a lower bound until the TIME_LOW that refines it
            timed = True
        elif typ == TIME_LOW:
            low = w & 0xFFF
            timed = True
        t = ((high << 12) | low) + wraps * WRAP_US if high >= 0 else -1
        if timed and t > runmax:
            runmax = t
        if ln > 0:
            cut = ln >= max_words
            if not cut and timed:
                cut = runmax >= bound if t0 >= 0 else t >= 0
            if cut:
                cuts[nc] = i
                t0s[nc] = t
                tlasts[nc] = cur
                nc += 1
                ln = 0
        if ln == 0:
            t0 = t
            bound = t - t % packet_us + packet_us if t >= 0 else 0
            if i == 0:
                first_t0 = t
        ln += 1
        cur = t
        events += np.int64(typ == 2) + _POP[w & _VMASK[typ]]
        if typ == 0xA:
            trig_at[nt] = i
            trig_t[nt] = t
            nt += 1
    st[_HIGH] = high
    st[_LOW] = low
    st[_WRAPS] = wraps
    st[_RUNMAX] = runmax
    st[_CUR] = cur
    st[_LEN] = ln
    st[_T0] = t0
    st[_BOUND] = bound
    st[_EVENTS] = events
    return nc, nt, first_t0


@dataclass
class Evt3Packet:
    """One EventPacket's payload: EVT3 words, as one or more pieces that follow each other (a packet that
    spans two reads of a device is not copied into one array here; the message's serializer joins them)."""

    parts: tuple  # uint16 arrays
    t_first_us: int  # time in force after the first word (-1: before the stream's first TIME_HIGH)
    t_last_us: int  # time in force after the last word
    trigger_words: np.ndarray  # TIME_HIGH, TIME_LOW, EXT_TRIGGER triples for ~/triggers (may be empty)

    @property
    def words(self) -> np.ndarray:
        return self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)


_NO_TRIGGERS = np.empty(0, np.uint16)


class Evt3Cutter:
    """An EVT3 byte stream in, arriving in pieces of any size, :class:`Evt3Packet` s of its own words out, without
    decoding events: one ``packet_time_us`` interval of sensor time each (boundaries at its multiples, every
    packet but the first starting with a time word), at most ``max_bytes``. The same cuts whatever the pieces
    (a file read at once, a camera's USB buffers), except where :meth:`flush` closes a packet early. One
    numba pass per piece; the packets are views of the pieces (the open packet's words are held as views
    until a later piece closes it). Counts ``bytes_in``, ``events_in`` (CD events: ADDR_X words plus vector
    bits) and ``triggers_in``."""

    def __init__(self, packet_time_us: int = 1000, max_bytes: int = 1_000_000):
        if packet_time_us < 1 or max_bytes < 2:
            raise ValueError("packet_time_us must be >= 1 and max_bytes >= 2")
        self.packet_time_us = int(packet_time_us)
        self.max_words = max(1, int(max_bytes) // 2)
        self.state = _new_state()
        self._held: list[np.ndarray] = []  # the open packet's words from earlier pieces
        self._held_trig: list[np.ndarray] = []  # and its trigger triples
        self._odd = b""
        self.bytes_in = 0
        self.triggers_in = 0

    @property
    def events_in(self) -> int:
        return int(self.state[_EVENTS])

    def pending(self) -> int:
        """Words held back in the open packet."""
        return sum(len(h) for h in self._held)

    def feed(self, data) -> list[Evt3Packet]:
        """One read: bytes-like, or a list of bytes-like pieces (empty = nothing came in time: :meth:`flush`);
        the packets it closed."""
        if isinstance(data, list):
            if not data:
                return self.flush()
            out = []
            for piece in data:
                out += self.add(piece)
            return out
        return self.add(data) if len(data) else self.flush()

    def add(self, data) -> list[Evt3Packet]:
        """Bytes-like ``data`` that continue the stream (a piece may end inside a word); the packets closed."""
        self.bytes_in += len(data)
        if self._odd:
            data = self._odd + bytes(data)
            self._odd = b""
        n = len(data) // 2
        if 2 * n != len(data):
            self._odd = bytes(memoryview(data)[2 * n :])
        if n == 0:
            return []
        return self.add_words(np.frombuffer(data, dtype="<u2", count=n))

    def add_words(self, words: np.ndarray) -> list[Evt3Packet]:
        """Whole words (uint16) that continue the stream; the packets closed."""
        n = len(words)
        if n == 0:
            return []
        cuts = np.empty(n, np.int64)
        t0s = np.empty(n, np.int64)
        tlasts = np.empty(n, np.int64)
        trig_at = np.empty(n, np.int64)
        trig_t = np.empty(n, np.int64)
        open_t0 = int(self.state[_T0]) if self.state[_LEN] > 0 else None
        nc, nt, first_t0 = _cut_words(
            words, self.state, self.packet_time_us, self.max_words, cuts, t0s, tlasts, trig_at, trig_t
        )
        self.triggers_in += int(nt)
        triples = trigger_words_at(words, trig_at[:nt], trig_t[:nt]) if nt else None
        bounds = [0, *cuts[:nc].tolist(), n]
        starts_t0 = [int(first_t0) if open_t0 is None else open_t0, *t0s[:nc].tolist()]
        out = []
        for k in range(nc):
            a, b = bounds[k], bounds[k + 1]
            parts = (*self._held, words[a:b]) if k == 0 and b > a else tuple(self._held) if k == 0 else (words[a:b],)
            trig = self._triggers_between(triples, trig_at[:nt], a, b, first=k == 0)
            out.append(Evt3Packet(parts, starts_t0[k], int(tlasts[k]), trig))
        a = bounds[nc]
        if nc:
            self._held, self._held_trig = [], []
        if a < n:
            self._held.append(words[a:])
        if nt:
            self._held_trig.append(self._triggers_between(triples, trig_at[:nt], a, n, first=False))
        return out

    def _triggers_between(self, triples, at, a: int, b: int, first: bool) -> np.ndarray:
        """Trigger triples of words[a:b] (with those held from earlier pieces when ``first``)."""
        held = self._held_trig if first else []
        if triples is None:
            mine = _NO_TRIGGERS
        else:
            i, j = np.searchsorted(at, (a, b))
            mine = triples[3 * i : 3 * j]
        if held:
            return np.concatenate([*held, mine])
        return mine

    def flush(self) -> list[Evt3Packet]:
        """Close the open packet (end of stream, or nothing came in time); the next word opens a new one."""
        if self.state[_LEN] == 0:
            return []
        parts = tuple(self._held)
        trig = np.concatenate(self._held_trig) if self._held_trig else _NO_TRIGGERS
        pkt = Evt3Packet(parts, int(self.state[_T0]), int(self.state[_CUR]), trig)
        self._held, self._held_trig = [], []
        self.state[_LEN] = 0
        return [pkt]


def split_evt3(words: np.ndarray, packet_time_us: int = 1000, max_bytes: int = 1 << 20) -> list[tuple[int, int, int]]:
    """``(start, end, t_first_us)`` word ranges of the packets :class:`Evt3Cutter` makes of ``words`` (one
    piece, then flushed)."""
    cutter = Evt3Cutter(packet_time_us, max_bytes)
    words = np.ascontiguousarray(words, dtype=np.uint16)
    out, pos = [], 0
    for pkt in cutter.add_words(words) + cutter.flush():
        n = sum(len(p) for p in pkt.parts)
        out.append((pos, pos + n, pkt.t_first_us))
        pos += n
    return out


def trigger_words(words: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each EXT_TRIGGER word: a TIME_HIGH, TIME_LOW, EXT_TRIGGER triple (uint16) that decodes alone;
    ``times`` is :func:`word_times` of ``words``."""
    idx = np.nonzero((np.asarray(words) >> 12) == 0xA)[0]
    return trigger_words_at(words, idx, times[idx])


def trigger_words_at(words: np.ndarray, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The triples of the EXT_TRIGGER words ``words[idx]`` at times ``t``."""
    out = np.empty(3 * len(idx), np.uint16)
    t = np.maximum(t, 0) % WRAP_US
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
