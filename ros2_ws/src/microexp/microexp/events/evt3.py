"""Prophesee EVT 3.0: a streaming decoder and encoder for 16-bit little-endian words.

Word layout (type in bits 15..12, then):

====  ============  ==========================================================
type  name          payload
====  ============  ==========================================================
0x0   ADDR_Y        bit 11 system type (master/slave, ignored), bits 10..0 y
0x2   ADDR_X        bit 11 polarity, bits 10..0 x: one event at (x, y, t)
0x3   VECT_BASE_X   bit 11 polarity, bits 10..0 base x for the vector words
0x4   VECT_12       bits 11..0: events at base_x + i for each set bit i; base_x += 12
0x5   VECT_8        bits 7..0: events at base_x + i for each set bit i; base_x += 8
0x6   TIME_LOW      bits 11..0: low 12 bits of the 24-bit µs time
0x7   CONTINUED_4   ignored
0x8   TIME_HIGH     bits 11..0: high 12 bits of the 24-bit µs time
0xA   EXT_TRIGGER   bits 11..8 trigger id, bit 0 value (edge)
0xE   OTHERS        ignored
0xF   CONTINUED_12  ignored
====  ============  ==========================================================

Types 0x1, 0x9, 0xB, 0xC, 0xD are reserved: the decoder skips them and counts them in
:attr:`Evt3Decoder.unknown_words` (the file readers of :mod:`microexp.events.raw` turn them into a
:class:`~microexp.errors.FormatError`).

Decisions, as implemented here:

- **Time** is ``(high << 12) | low`` on a 24-bit counter that wraps every 2**24 µs (16.777 s). The decoder
  keeps an absolute count of TIME_HIGH steps (``reference``), so ``t`` is an int64 that keeps growing across
  wraps. A new TIME_HIGH value ``v`` is read as the nearest step on the 12-bit circle: a forward step of
  ``d = (v - reference) mod 4096`` when ``d < 2048`` (this includes the wrap 4095 -> 0), else a backward step of
  ``4096 - d``. A backward step never occurs in a sound stream, so it is taken as a **time bit error**: the
  events after that word get the backward time (which is what the word says; ``t`` is not clamped), but the
  reference stays where it was, so the next correct TIME_HIGH word puts time back on track and nothing adds
  16.7 s. Each such word is counted in :attr:`Evt3Decoder.time_jumps`. If the *reference* was the bad word
  (a bit error that jumped forward), the following correct words all look like backward steps of the same
  size: after two consecutive such words that agree (equal or +1), the decoder adopts them as the reference.
  A backward step that would give a negative time is read as the forward step instead.
  Until the first TIME_HIGH word of a stream, the high part is 0. A fresh decoder maps the first TIME_HIGH
  word into the first 16.7 s epoch (the stream does not carry the epoch); call :meth:`Evt3Decoder.reset`
  when the camera restarts its clock.
- **Out-of-sensor events** (x >= width or y >= height) are dropped and counted in
  :attr:`Evt3Decoder.out_of_bounds`.
- **Split words**: a payload with an odd byte count leaves its last byte in the decoder, to be completed by the
  first byte of the next payload (:attr:`Evt3Decoder.pending_bytes`).
- ``time_base`` is accepted for the codec protocol and ignored: EVT3 payloads carry their own time.

The encoder writes TIME_HIGH (with intermediate TIME_HIGH words for gaps of 2048 high steps or more, about
8.4 s, so that the stream stays readable by the rule above), TIME_LOW and ADDR_Y on change, VECT_BASE_X +
VECT_12/VECT_8 for two or more consecutive events of the same time, row and polarity with increasing x within
a 12-pixel block, and ADDR_X otherwise. Vector words take their polarity from VECT_BASE_X only (ADDR_X does not
change it); as some decoders (expelliarmus 1.1) let ADDR_X set it too, the encoder writes VECT_BASE_X again after
an ADDR_X of the other polarity, so that both readings agree. Decoding the encoder's output gives back the same
events in the same order, provided the first event's time is below 2**24 µs (the stream has no epoch) and the
events fit the sensor.

Speed (one core, numba): the decoder keeps the common path free of data-dependent branches (each word writes a
speculative event that only a valid ADDR_X keeps; state updates are arithmetic selects) and sizes its output
from the payload, growing it at most once; a fresh output array costs page faults that are part of the
measured rate. See ``microexp bench evt3``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from microexp.errors import ParameterError
from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, copy_events
from microexp.events.payload import as_uint8, check_size

WORD_BYTES = 2
MAX_COORD = 2048  # 11-bit coordinates

# word types
ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0xA, 0xE, 0xF
RESERVED_TYPES = (0x1, 0x9, 0xB, 0xC, 0xD)

_HALF = 2048  # half of the 12-bit TIME_HIGH circle

# lookup tables used by the kernels
_CTZ = np.array([((i & -i).bit_length() - 1) if i else 0 for i in range(4096)], dtype=np.int64)
_POP = np.array([bin(i).count("1") for i in range(4096)], dtype=np.int64)
_VMASK = np.zeros(16, dtype=np.int64)
_VMASK[VECT_12], _VMASK[VECT_8] = 0xFFF, 0xFF
_VSTEP = np.zeros(16, dtype=np.int64)
_VSTEP[VECT_12], _VSTEP[VECT_8] = 12, 8
_RESERVED = np.zeros(16, dtype=np.int64)
_RESERVED[list(RESERVED_TYPES)] = 1
_RARE = _RESERVED.copy()  # word types handled off the common path
_RARE[[TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED_12]] = 1

# decoder state slots (one int64 array so that the kernel can update it in place)
_S_Y, _S_BX, _S_VP, _S_REF, _S_CUR, _S_TL, _S_HAVE, _S_OOB, _S_UNK, _S_FIRST_UNK, _S_JUMPS, _S_LASTBACK, _S_WORDS = (
    range(13)
)
_N_STATE = 13


def _new_state() -> np.ndarray:
    s = np.zeros(_N_STATE, dtype=np.int64)
    s[_S_FIRST_UNK] = -1
    s[_S_LASTBACK] = -1
    return s


@nb.njit(cache=True, nogil=True)
def _time_high_step(v, ref, cur, have, lastback, jumps, half, period):
    """One TIME_HIGH value ``v`` on a circle of ``period`` steps -> (ref, cur, have, lastback, jumps)."""
    if have == 0:
        return v, v, 1, -1, jumps
    d = (v - ref) & (period - 1)
    if d < half:
        ref += d
        return ref, ref, 1, -1, jumps
    cand = ref - (period - d)
    if cand < 0:  # a backward step before time zero: read it as forward, but do not trust it
        return ref, ref + d, 1, -1, jumps + 1
    if lastback >= 0 and ((v - lastback) & (period - 1)) <= 1:
        ref = cand  # two agreeing words behind the reference: the reference was the bad one
    return ref, cand, 1, v, jumps + 1


@nb.njit(cache=True, nogil=True)
def _count_evt3(words, start):
    """Upper bound of the CD events in words[start:] (ADDR_X words + vector bits)."""
    n = 0
    for i in range(start, words.shape[0]):
        x = np.int64(words[i])
        typ = x >> 12
        n += np.int64(typ == 2) + _POP[x & _VMASK[typ]]
    return n


def count_events(words: np.ndarray) -> int:
    """CD events an EVT3 word array carries (ADDR_X words plus the set bits of vector words)."""
    return int(_count_evt3(np.asarray(words, dtype=np.uint16), 0)) if len(words) else 0


@nb.njit(cache=True, nogil=True, inline="always")
def _pick(c, a, b):
    """a if c (0 or 1) else b, as arithmetic so that LLVM keeps the loop free of branches."""
    m = -c
    return (a & m) | (b & ~m)


@nb.njit(cache=True, nogil=True)
def _decode_evt3(words, out, trig, state, width, height):  # noqa: PLR0915 - numba kernel: one pass over the words; calls out of it cost per word
    """Decode ``words`` into out/trig; returns (words consumed, events written, triggers written).

    Stops early when ``out`` has fewer than 13 free slots or ``trig`` is full; ``state`` is updated in place.
    Every word writes a speculative event at out[n] and advances n only for a valid ADDR_X word, and the
    state updates are selects, so the common path has no data-dependent branch. Indices are unsigned so that
    numba emits no negative-index wraparound code.
    """
    y = state[_S_Y]
    bx = state[_S_BX]
    vp = state[_S_VP]
    cur = state[_S_CUR]
    tl = state[_S_TL]
    t = (cur << 12) | tl
    yok = np.int64(y < height)
    n = np.uint64(0)
    nt = 0
    cap = np.uint64(max(out.shape[0] - 13, 0))
    full = out.shape[0] < 13
    tcap = trig.shape[0]
    nw = words.shape[0]
    consumed = nw
    for i in range(nw):
        if n > cap or full:
            consumed = i
            break
        x = np.int64(words[i])
        typ = x >> 12
        if _RARE[typ]:  # TIME_HIGH, EXT_TRIGGER, ignored and reserved types
            if typ == 8:
                ref, cur, have, lastback, jumps = _time_high_step(
                    x & 0xFFF, state[_S_REF], cur, state[_S_HAVE], state[_S_LASTBACK], state[_S_JUMPS], _HALF, 4096
                )
                state[_S_REF] = ref
                state[_S_HAVE] = have
                state[_S_LASTBACK] = lastback
                state[_S_JUMPS] = jumps
                t = (cur << 12) | tl
            elif typ == 0xA:
                if nt >= tcap:
                    consumed = i
                    break
                tr = trig[nt]
                tr.t = t
                tr.id = (x >> 8) & 0xF
                tr.value = x & 1
                nt += 1
            elif _RESERVED[typ]:
                state[_S_UNK] += 1
                if state[_S_FIRST_UNK] < 0:
                    state[_S_FIRST_UNK] = state[_S_WORDS] + i
            continue
        v11 = x & 0x7FF
        p11 = (x >> 11) & 1
        isx = np.int64(typ == 2)
        valid = isx & yok & np.int64(v11 < width)
        r = out[n]
        r.x = v11
        r.y = y
        r.t = t
        r.p = p11
        n += np.uint64(valid)
        if isx != valid:
            state[_S_OOB] += 1
        m = x & _VMASK[typ]
        if m != 0:  # vector word with events
            while m != 0:
                xc = bx + _CTZ[m]
                r = out[n]
                r.x = xc
                r.y = y
                r.t = t
                r.p = vp
                ok = yok & np.int64(xc < width)
                n += np.uint64(ok)
                if ok == 0:
                    state[_S_OOB] += 1
                m &= m - 1
        is3 = np.int64(typ == 3)
        bx = _pick(is3, v11, bx + _VSTEP[typ])
        vp = _pick(is3, p11, vp)
        y = _pick(np.int64(typ == 0), v11, y)
        yok = np.int64(y < height)
        tl = _pick(np.int64(typ == 6), x & 0xFFF, tl)
        t = (cur << 12) | tl
    state[_S_Y] = y
    state[_S_BX] = bx
    state[_S_VP] = vp
    state[_S_CUR] = cur
    state[_S_TL] = tl
    state[_S_WORDS] += consumed
    return consumed, np.int64(n), nt


class WordStream:
    """Splits a stream of byte payloads into whole little-endian words, keeping a trailing partial word."""

    def __init__(self, word_bytes: int, dtype: str):
        self.word_bytes = word_bytes
        self.dtype = np.dtype(dtype)
        self.pending = b""

    def reset(self) -> None:
        self.pending = b""

    def words(self, payload) -> np.ndarray:
        buf = as_uint8(payload)
        if self.pending:
            buf = np.concatenate([np.frombuffer(self.pending, dtype=np.uint8), buf])
        whole = (buf.shape[0] // self.word_bytes) * self.word_bytes
        self.pending = buf[whole:].tobytes()
        words = buf[:whole].view(self.dtype)
        if not words.flags.aligned:
            words = words.copy()
        return words


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view: numba compiles (and caches) one kernel per array type, and inputs come both ways."""
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def shrink(arr: np.ndarray, n: int) -> np.ndarray:
    """arr[:n] without keeping the unused tail allocated (in place when arr owns its memory)."""
    if n == arr.shape[0]:
        return arr
    if arr.base is None and arr.flags.owndata:
        arr.resize(n, refcheck=False)
        return arr
    return copy_events(arr[:n])


def run_kernel(kernel, counter, words, state, width, height, small_words=1 << 16):
    """Run a decode kernel over all of ``words``, growing the outputs as needed: (events, triggers)."""
    nw = words.shape[0]
    if nw <= small_words:
        cap = counter(words, 0) + 16
    else:
        cap = nw + nw // 2 + 16
    out = np.empty(cap, dtype=EVENT_DTYPE)
    trig = np.empty(16, dtype=TRIGGER_DTYPE)
    n = nt = 0
    i = 0
    while True:
        di, dn, dnt = kernel(words[i:], out[n:], trig[nt:], state, width, height)
        i += di
        n += dn
        nt += dnt
        if i >= nw:
            break
        if out.shape[0] - n <= 13:  # events full: grow once to the exact bound of what is left
            grown = np.empty(n + counter(words, i) + 16, dtype=EVENT_DTYPE)
            grown[:n] = out[:n]
            out = grown
        if nt >= trig.shape[0]:
            grown_t = np.empty(2 * trig.shape[0], dtype=TRIGGER_DTYPE)
            grown_t[:nt] = trig[:nt]
            trig = grown_t
    return shrink(out, n), shrink(trig, nt)


class WordStreamDecoder:
    """What the EVT 3.0 and EVT 2.0 decoders share: a :class:`WordStream` that reassembles words split
    across payloads, a numba state array made by ``_new_state``, and the counters read from it at the slots
    named by ``_COUNTER_SLOTS`` (out-of-bounds, unknown, first unknown, time jumps, words decoded).
    Subclasses give ``word_bytes``, ``word_dtype``, ``_new_state`` and ``decode_words``."""

    _COUNTER_SLOTS: tuple = ()
    word_bytes = 2
    word_dtype = "<u2"

    def __init__(self, width: int, height: int):
        self.width, self.height = check_size(width, height, MAX_COORD)
        self._stream = WordStream(self.word_bytes, self.word_dtype)
        self.reset()

    def reset(self) -> None:
        """Forget everything about the stream (new recording or camera restart)."""
        self._state = self._new_state()
        self._stream.reset()
        self.bytes_in = 0

    def decode(self, payload, time_base: int = 0):
        """Decode one payload: (events, triggers) as EVENT_DTYPE / TRIGGER_DTYPE arrays. ``time_base`` is
        ignored (EVT carries its own time)."""
        buf = as_uint8(payload)
        self.bytes_in += buf.shape[0]
        return self.decode_words(self._stream.words(buf))

    @property
    def out_of_bounds(self) -> int:
        return int(self._state[self._COUNTER_SLOTS[0]])

    @property
    def unknown_words(self) -> int:
        return int(self._state[self._COUNTER_SLOTS[1]])

    @property
    def first_unknown_offset(self):
        k = int(self._state[self._COUNTER_SLOTS[2]])
        return None if k < 0 else k * self.word_bytes

    @property
    def time_jumps(self) -> int:
        return int(self._state[self._COUNTER_SLOTS[3]])

    @property
    def words_decoded(self) -> int:
        return int(self._state[self._COUNTER_SLOTS[4]])

    @property
    def pending_bytes(self) -> int:
        return len(self._stream.pending)


class Evt3Decoder(WordStreamDecoder):
    """Stateful EVT 3.0 decoder for one stream of payloads (see the module docstring for the rules).

    Attributes (cumulative since construction or :meth:`reset`): ``out_of_bounds`` (events dropped for
    x >= width or y >= height), ``unknown_words`` (reserved word types skipped), ``first_unknown_offset``
    (byte offset in the stream of the first of them, or None), ``time_jumps`` (TIME_HIGH words read as bit
    errors), ``bytes_in`` (bytes received) and ``pending_bytes`` (0 or 1: a split word waiting for its end).
    """

    encoding = "evt3"
    word_bytes = WORD_BYTES
    word_dtype = "<u2"
    _COUNTER_SLOTS = (_S_OOB, _S_UNK, _S_FIRST_UNK, _S_JUMPS, _S_WORDS)
    _new_state = staticmethod(_new_state)

    def decode_words(self, words: np.ndarray):
        """Decode whole words (uint16 array, already little-endian ordered) that continue this stream."""
        words = readonly(np.ascontiguousarray(words, dtype=np.uint16))
        return run_kernel(_decode_evt3, _count_evt3, words, self._state, self.width, self.height)


# --------------------------------------------------------------------------------------------------- encoder

# encoder state slots
_E_HAVE, _E_TH, _E_TL, _E_Y, _E_BX, _E_VP, _E_LAST_T = range(7)


@nb.njit(cache=True, nogil=True)
def _scan_events(ev, prev_th, half):
    """One pass over the events for the encoders' checks.

    Returns (index of the first event earlier than its predecessor or -1, max x, max y, max p, min t,
    number of extra TIME_HIGH words needed for steps of ``half`` or more, starting from ``prev_th``).
    """
    unsorted = -1
    xmax = 0
    ymax = 0
    pmax = 0
    tmin = np.int64(ev[0].t)
    extra = 0
    last_t = tmin
    th = prev_th
    for i in range(ev.shape[0]):
        e = ev[i]
        t = np.int64(e.t)
        if t < last_t and unsorted < 0:
            unsorted = i
        last_t = t
        tmin = min(tmin, t)
        xmax = max(xmax, np.int64(e.x))
        ymax = max(ymax, np.int64(e.y))
        pmax = max(pmax, np.int64(e.p))
        eth = t >> 12 if half == _HALF else t >> 6
        step = eth - th
        if step >= half:
            extra += (step - 1) // (half - 1)
        th = eth
    return unsorted, xmax, ymax, pmax, tmin, extra


@nb.njit(cache=True, nogil=True)
def _encode_evt3(ev, out, state, width, sensor):  # noqa: PLR0912, PLR0915 - numba kernel: one pass over the events; calls out of it cost per event
    """Encode the time-sorted events ``ev`` into ``out`` (uint16); returns the number of words written.

    Vector runs (events of one time, row and polarity at rising x) become VECT_BASE_X and mask words. Compact form
    (``sensor`` false): one VECT_12, or a VECT_8 where the run ends within 8 pixels of its base. Sensor form: the
    only vector form OpenEB's decoder reads, VECT_12, VECT_12, VECT_8 covering 32 pixels from the base, used only
    where base + 32 <= ``width`` (OpenEB takes every VECT_12 as the start of such a triple, skips a lone VECT_8).

    Time and row words are written speculatively and kept only when they change, which keeps the common path
    nearly free of data-dependent branches.
    """
    n = ev.shape[0]
    if n == 0:
        return 0
    span = 32 if sensor else 12  # pixels one vector covers from its base
    th = state[_E_TH]  # absolute TIME_HIGH count (t >> 12) the decoder holds
    tl = state[_E_TL]
    cy = state[_E_Y]  # -1: unknown to the decoder
    bx = state[_E_BX]  # decoder's base x after the last vector word; -1: unknown
    vp = state[_E_VP]
    k = 0
    if state[_E_HAVE] == 0:
        t0 = np.int64(ev[0].t)
        th = t0 >> 12
        out[0] = 0x8000 | (th & 0xFFF)
        k = 1
        tl = -1
    i = 0
    while i < n:
        e = ev[i]
        t = np.int64(e.t)
        y = np.int64(e.y)
        x = np.int64(e.x)
        p = np.int64(e.p)
        eth = t >> 12
        etl = t & 0xFFF
        if eth - th >= _HALF:  # long gap: keep each TIME_HIGH step below half the circle
            while eth - th >= _HALF:
                th += _HALF - 1
                out[k] = 0x8000 | (th & 0xFFF)
                k += 1
        out[k] = 0x8000 | (eth & 0xFFF)
        k += np.int64(eth != th)
        out[k] = 0x6000 | etl
        k += np.int64(etl != tl)
        out[k] = y
        k += np.int64(y != cy)
        th = eth
        tl = etl
        cy = y
        # does the next event continue a vector run with this one?
        if vp == p and bx >= 0 and bx <= x and x < bx + span and (not sensor or bx + span <= width):
            b = bx
        else:
            b = x
        j = i + 1
        run = False
        if j < n and (not sensor or b + span <= width):
            f = ev[j]
            fx = np.int64(f.x)
            run = (np.int64(f.t) == t) & (np.int64(f.y) == y) & (np.int64(f.p) == p) & (fx > x) & (fx < b + span)
        if not run:  # a lone event: one ADDR_X word
            out[k] = 0x2000 | (p << 11) | x
            k += 1
            # Some decoders (expelliarmus 1.1) let ADDR_X set the polarity of later vector words, which the
            # format reserves to VECT_BASE_X: after an ADDR_X of the other polarity, write VECT_BASE_X again.
            vp = _pick(np.int64(p == vp), vp, np.int64(-1))
            i = j
            continue
        last = x
        while j < n:
            f = ev[j]
            fx = np.int64(f.x)
            if np.int64(f.t) != t or np.int64(f.y) != y or np.int64(f.p) != p or fx <= last or fx >= b + span:
                break
            last = fx
            j += 1
        if b != bx or vp != p:
            out[k] = 0x3000 | (p << 11) | b
            k += 1
            vp = p
        mask = 0
        for q in range(i, j):
            mask |= 1 << (np.int64(ev[q].x) - b)
        if sensor:
            out[k] = 0x4000 | (mask & 0xFFF)
            out[k + 1] = 0x4000 | ((mask >> 12) & 0xFFF)
            out[k + 2] = 0x5000 | ((mask >> 24) & 0xFF)
            k += 3
            bx = b + 32
        elif last - b < 8:
            out[k] = 0x5000 | mask
            k += 1
            bx = b + 8
        else:
            out[k] = 0x4000 | mask
            k += 1
            bx = b + 12
        i = j
    state[_E_HAVE] = 1
    state[_E_TH] = th
    state[_E_TL] = tl
    state[_E_Y] = cy
    state[_E_BX] = bx
    state[_E_VP] = vp
    state[_E_LAST_T] = np.int64(ev[n - 1].t)
    return k


def as_events(events) -> np.ndarray:
    """``events`` as a contiguous EVENT_DTYPE array (a copy only when the dtype or layout differs)."""
    arr = np.asarray(events)
    if arr.dtype.names is None or not {"x", "y", "t", "p"} <= set(arr.dtype.names):
        raise ParameterError("events must be a structured array with fields x, y, t, p")
    arr = arr.reshape(-1)
    if arr.dtype == EVENT_DTYPE and arr.flags.c_contiguous:
        return readonly(arr)
    out = np.empty(arr.shape[0], dtype=EVENT_DTYPE)
    for name in ("x", "y", "t", "p"):
        out[name] = arr[name]
    return readonly(out)


def check_events(
    ev: np.ndarray, width: int, height: int, last_t: int | None, prev_high: int | None, half: int = _HALF
) -> int:
    """Raise ParameterError unless the events are time-sorted (also after ``last_t``), t >= 0, inside the sensor.

    Returns the number of extra TIME_HIGH words that long gaps need (see :func:`_scan_events`).
    """
    t0 = int(ev[0]["t"])
    shift = 12 if half == _HALF else 6
    unsorted, xmax, ymax, pmax, tmin, extra = _scan_events(ev, t0 >> shift if prev_high is None else prev_high, half)
    if unsorted >= 0:
        raise ParameterError(
            f"events must be sorted by t: event {unsorted} (t={int(ev[unsorted]['t'])}) comes after "
            f"t={int(ev[unsorted - 1]['t'])}"
        )
    if tmin < 0:
        raise ParameterError(f"event times must be >= 0 µs, got t={tmin}")
    if last_t is not None and t0 < last_t:
        raise ParameterError(f"events must continue the stream in time order: t={t0} < previous {last_t}")
    if xmax >= width or ymax >= height:
        raise ParameterError(f"event at x={xmax} or y={ymax} is outside the {width}x{height} sensor")
    if pmax > 1:
        raise ParameterError("polarity p must be 0 or 1")
    return int(extra)


class Evt3Encoder:
    """Stateful EVT 3.0 encoder: consecutive :meth:`encode` calls form one valid stream.

    ``vectors="compact"`` (default) writes single VECT_12 / VECT_8 words; ``vectors="sensor"`` writes them as
    the sensor does, VECT_12 + VECT_12 + VECT_8 for 32 pixels from a base, the only form OpenEB's decoder
    reads (so Prophesee's own tools decode the stream too)."""

    encoding = "evt3"

    def __init__(self, width: int, height: int, vectors: str = "compact"):
        self.width, self.height = check_size(width, height, MAX_COORD)
        if vectors not in ("compact", "sensor"):
            raise ParameterError(f"vectors must be 'compact' or 'sensor', not {vectors!r}")
        self.vectors = vectors
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros(7, dtype=np.int64)
        self._state[_E_Y] = -1
        self._state[_E_BX] = -1
        self._state[_E_VP] = -1
        self._buf = np.empty(0, dtype="<u2")  # scratch words, reused across packets

    def encode(self, events):
        """Encode time-sorted events: (payload bytes, 0). Raises ParameterError for unsorted/outside events."""
        ev = as_events(events)
        if ev.shape[0] == 0:
            return b"", 0
        have = bool(self._state[_E_HAVE])
        extra = check_events(
            ev,
            self.width,
            self.height,
            int(self._state[_E_LAST_T]) if have else None,
            int(self._state[_E_TH]) if have else None,
        )
        need = 4 * ev.shape[0] + extra + 8
        if self._buf.shape[0] < need:
            self._buf = np.empty(max(need, 2 * self._buf.shape[0]), dtype="<u2")
        k = _encode_evt3(ev, self._buf, self._state, self.width, self.vectors == "sensor")
        return self._buf[:k].tobytes(), 0

    def encode_with_triggers(self, events, triggers) -> bytes:
        """Encode time-sorted events with external-trigger edges (TRIGGER_DTYPE, time-sorted) merged in: each
        edge becomes TIME_HIGH (after any gap words), TIME_LOW and EXT_TRIGGER, placed after the events of its
        time or earlier. Returns the payload bytes; the stream stays valid for later :meth:`encode` calls."""
        ev = as_events(events)
        if triggers is None or len(triggers) == 0:
            return self.encode(ev)[0]
        tr = np.asarray(triggers)
        if np.any(np.diff(tr["t"]) < 0) or int(tr["t"][0]) < 0:
            raise ParameterError("trigger times must be sorted and >= 0")
        cuts = np.searchsorted(ev["t"], tr["t"], side="right")
        parts = []
        prev = 0
        for k in range(len(tr)):
            c = int(cuts[k])
            if c > prev:
                parts.append(self.encode(ev[prev:c])[0])
                prev = c
            parts.append(self._trigger_words(int(tr["t"][k]), int(tr["id"][k]), int(tr["value"][k])))
        if prev < ev.shape[0]:
            parts.append(self.encode(ev[prev:])[0])
        return b"".join(parts)

    def _trigger_words(self, t: int, channel: int, value: int) -> bytes:
        s = self._state
        last = int(s[_E_LAST_T]) if s[_E_HAVE] else None
        if last is not None and t < last:
            raise ParameterError(f"trigger at t={t} comes before the stream's time {last}")
        words = []
        eth = t >> 12
        th = int(s[_E_TH])
        if s[_E_HAVE]:
            while eth - th >= _HALF:  # long gap: the same intermediate TIME_HIGH words as events get
                th += _HALF - 1
                words.append(0x8000 | (th & 0xFFF))
        words += [0x8000 | (eth & 0xFFF), 0x6000 | (t & 0xFFF), 0xA000 | ((channel & 0xF) << 8) | (value & 1)]
        s[_E_HAVE] = 1
        s[_E_TH] = eth
        s[_E_TL] = t & 0xFFF
        s[_E_LAST_T] = t
        return np.asarray(words, dtype="<u2").tobytes()
