"""Prophesee EVT 2.0: a streaming decoder and encoder for 32-bit little-endian words.

Word layout (type in bits 31..28, then):

====  ============  ==========================================================================
type  name          payload
====  ============  ==========================================================================
0x0   CD_OFF        bits 27..22 low 6 bits of t, bits 21..11 x, bits 10..0 y (polarity 0)
0x1   CD_ON         same, polarity 1
0x8   TIME_HIGH     bits 27..0: the 28 high bits of the 34-bit µs time
0xA   EXT_TRIGGER   bits 27..22 low 6 bits of t, bits 12..8 trigger id, bit 0 value
0xE   OTHERS        ignored
0xF   CONTINUED     ignored
====  ============  ==========================================================================

Other types are reserved: skipped and counted in :attr:`Evt2Decoder.unknown_words`.

Time is ``(high << 6) | low`` on a 34-bit counter (it wraps after about 4 h 46 min). TIME_HIGH values are
unwrapped like EVT3's (see :mod:`microexp.events.evt3`): a step forward of less than half the 28-bit circle
is accepted, a step backward is a bit error that moves only the events up to the next TIME_HIGH word. Events
outside the sensor are dropped and counted in :attr:`Evt2Decoder.out_of_bounds`; a payload whose length is
not a multiple of 4 leaves its last bytes for the next payload. ``time_base`` is ignored.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from microexp.events.evt3 import (
    MAX_COORD,
    WordStreamDecoder,
    _time_high_step,
    as_events,
    check_events,
    readonly,
    shrink,
)
from microexp.events.payload import check_size

WORD_BYTES = 4
CD_OFF, CD_ON, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED = 0x0, 0x1, 0x8, 0xA, 0xE, 0xF
RESERVED_TYPES = tuple(k for k in range(16) if k not in (CD_OFF, CD_ON, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED))

_PERIOD = 1 << 28
_HALF = 1 << 27

_S_REF, _S_CUR, _S_HAVE, _S_LASTBACK, _S_JUMPS, _S_OOB, _S_UNK, _S_FIRST_UNK, _S_WORDS = range(9)


def _new_state() -> np.ndarray:
    s = np.zeros(9, dtype=np.int64)
    s[_S_LASTBACK] = -1
    s[_S_FIRST_UNK] = -1
    return s


@nb.njit(cache=True, nogil=True)
def _decode_evt2(words, out, trig, state, width, height):
    """Decode ``words`` into out (at least len(words) + 1 slots) and trig; returns (consumed, events, triggers).

    Stops early only when ``trig`` is full.
    """
    cur = state[_S_CUR]
    thsh = cur << 6
    n = np.uint64(0)
    nt = 0
    tcap = trig.shape[0]
    nw = words.shape[0]
    consumed = nw
    for i in range(nw):
        x = np.int64(words[i])
        typ = x >> 28
        if typ <= 1:
            ex = (x >> 11) & 0x7FF
            ey = x & 0x7FF
            r = out[n]
            r.x = ex
            r.y = ey
            r.t = thsh | ((x >> 22) & 0x3F)
            r.p = typ
            ok = np.int64(ex < width) & np.int64(ey < height)
            n += np.uint64(ok)
            if ok == 0:
                state[_S_OOB] += 1
        elif typ == 8:
            ref, cur, have, lastback, jumps = _time_high_step(
                x & (_PERIOD - 1),
                state[_S_REF],
                cur,
                state[_S_HAVE],
                state[_S_LASTBACK],
                state[_S_JUMPS],
                _HALF,
                _PERIOD,
            )
            state[_S_REF] = ref
            state[_S_HAVE] = have
            state[_S_LASTBACK] = lastback
            state[_S_JUMPS] = jumps
            thsh = cur << 6
        elif typ == 0xA:
            if nt >= tcap:
                consumed = i
                break
            tr = trig[nt]
            tr.t = thsh | ((x >> 22) & 0x3F)
            tr.id = (x >> 8) & 0x1F
            tr.value = x & 1
            nt += 1
        elif typ != 0xE and typ != 0xF:
            state[_S_UNK] += 1
            if state[_S_FIRST_UNK] < 0:
                state[_S_FIRST_UNK] = state[_S_WORDS] + i
    state[_S_CUR] = cur
    state[_S_WORDS] += consumed
    return consumed, np.int64(n), nt


class Evt2Decoder(WordStreamDecoder):
    """Stateful EVT 2.0 decoder for one stream of payloads; same protocol and attributes as Evt3Decoder."""

    encoding = "evt2"
    word_bytes = WORD_BYTES
    word_dtype = "<u4"
    _COUNTER_SLOTS = (_S_OOB, _S_UNK, _S_FIRST_UNK, _S_JUMPS, _S_WORDS)
    _new_state = staticmethod(_new_state)

    def decode_words(self, words: np.ndarray):
        """Decode whole words (uint32 array) that continue this stream."""
        words = readonly(np.ascontiguousarray(words, dtype=np.uint32))
        nw = words.shape[0]
        out = np.empty(nw + 1, dtype=EVENT_DTYPE)
        trig = np.empty(16, dtype=TRIGGER_DTYPE)
        n = nt = i = 0
        while True:
            di, dn, dnt = _decode_evt2(words[i:], out[n:], trig[nt:], self._state, self.width, self.height)
            i += di
            n += dn
            nt += dnt
            if i >= nw:
                break
            grown = np.empty(2 * trig.shape[0], dtype=TRIGGER_DTYPE)
            grown[:nt] = trig[:nt]
            trig = grown
        return shrink(out, n), shrink(trig, nt)


@nb.njit(cache=True, nogil=True)
def _encode_evt2(ev, out, state):
    """Encode time-sorted events into ``out`` (uint32); state = [have, time high]. Returns the words written."""
    n = ev.shape[0]
    k = 0
    th = state[1]
    if state[0] == 0 and n > 0:
        th = (np.int64(ev[0].t) >> 6) - 1  # forces the first TIME_HIGH word
    for i in range(n):
        e = ev[i]
        t = np.int64(e.t)
        eth = t >> 6
        if eth != th:
            if state[0] != 0 or i > 0:
                while eth - th >= _HALF:
                    th += _HALF - 1
                    out[k] = (0x8 << 28) | (th & (_PERIOD - 1))
                    k += 1
            out[k] = (0x8 << 28) | (eth & (_PERIOD - 1))
            k += 1
            th = eth
        out[k] = (np.int64(e.p) << 28) | ((t & 0x3F) << 22) | (np.int64(e.x) << 11) | np.int64(e.y)
        k += 1
    if n > 0:
        state[0] = 1
        state[1] = th
        state[2] = np.int64(ev[n - 1].t)
    return k


class Evt2Encoder:
    """Stateful EVT 2.0 encoder (CD events only): consecutive payloads form one stream."""

    encoding = "evt2"

    def __init__(self, width: int, height: int):
        self.width, self.height = check_size(width, height, MAX_COORD)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(3, dtype=np.int64)  # have, time high, last t

    def encode(self, events):
        """Encode time-sorted events: (payload bytes, 0)."""
        ev = as_events(events)
        if ev.shape[0] == 0:
            return b"", 0
        have = bool(self._state[0])
        extra = check_events(
            ev,
            self.width,
            self.height,
            int(self._state[2]) if have else None,
            int(self._state[1]) if have else None,
            half=_HALF,
        )
        out = np.empty(2 * ev.shape[0] + extra + 4, dtype="<u4")
        k = _encode_evt2(ev, out, self._state)
        return out[:k].tobytes(), 0
