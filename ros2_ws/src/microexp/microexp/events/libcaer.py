"""iniVation payloads of ``event_camera_msgs/EventPacket``: ``libcaer`` and ``libcaer_cmp``.

Both are what ``libcaer_driver`` publishes for DAVIS / DVXplorer cameras. Their ``time_base`` field is in
**nanoseconds** on the wire (ROS time at driver start plus elapsed sensor time); decoded events get
``t = time_base // 1000 + payload time`` in µs, and the encoders return ``time_base`` in ns (a multiple of
1000), as the driver does.

``libcaer`` (uncompressed, 8 bytes per event, little-endian), one libcaer polarity event each::

    uint32 data: bit 0 valid mark, bit 1 polarity (1 = ON), bits 2..16 y (15 bits), bits 17..31 x (15 bits)
    int32  timestamp: the low 31 bits of the sensor's 64-bit µs time

The driver sets ``time_base = (sensor time with the low 31 bits cleared) * 1000 + ROS start time (ns)`` from
the first event of the message, so within one message the 31-bit timestamp can roll over (every 2**31 µs,
about 35.8 min): a timestamp smaller than the one before adds 2**31 µs. Decisions here:

- the rollover count is kept across packets while ``time_base`` stays the same and restarts when it
  changes (the driver raises ``time_base`` by 2**31 µs in the first message after a rollover);
- a payload cut inside an event keeps the cut bytes; the completed event is decoded with the state
  (``time_base``) of the packet in which it began;
- events with the valid mark cleared (filtered out by libcaer) are skipped and counted (``invalid_events``);
  their timestamps still count for rollover detection;
- events outside width x height are dropped and counted (``out_of_bounds``).

``libcaer_cmp`` (compressed, little-endian 16-bit tokens, code in bits 15..12)::

    0 TIME_HIGH    bits 11..0: bits 23..12 of the time since time_base (µs)
    1 TIME_LOW     bits 11..0: bits 11..0 of that time
    2 ADDR_X       bits 10..0: x of the following events
    3 ADDR_Y       bit 11 polarity, bits 10..0 y: one event at (x, y)
    4 VECT_BASE_Y  bit 11 polarity, bits 10..0 base y for the next VECT_8
    5 VECT_8       bits 7..0: events at (x, base_y + i) for each set bit i; base_y += 8 afterwards

Time restarts at 0 (= time_base) whenever ``time_base`` changes (the driver's ``time_base`` is the time of
the message's first event, and it writes no time token for that event); state (time, x, vector base) is
kept across payloads with the same ``time_base``, so a payload split anywhere (even inside a token) decodes
as a whole. Other codes are skipped and counted (``unknown_words``); events outside the sensor are dropped
(``out_of_bounds``), as event_camera_codecs does.

The encoders are stateless apart from a time-order check: each ``encode`` call gives one self-contained
payload for a time-sorted batch that continues the previous one. ``libcaer``: a batch may not contain
a gap of 2**31 µs or more between consecutive events (split it). ``libcaer_cmp``: a batch must span less
than 2**24 µs (16.8 s). Decoding gives back the same events in the same order. (The compressed encoder
only merges events into a VECT_8 when they share t, x, polarity and an 8-row block in increasing y, so
order and duplicates survive.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from microexp.errors import ParameterError
from microexp.events.dtype import EVENT_DTYPE, concat_events, copy_events, empty_events, empty_triggers
from microexp.events.payload import as_uint8, check_size

__all__ = ["LibcaerDecoder", "LibcaerEncoder", "LibcaerCmpDecoder", "LibcaerCmpEncoder", "ROLLOVER_US", "CMP_SPAN_US"]

ROLLOVER_US = 1 << 31
"""Period of libcaer's 31-bit event timestamp (µs)."""

CMP_SPAN_US = 1 << 24
"""The time range one ``libcaer_cmp`` payload can express (µs)."""

_LIBCAER_MAX_COORD = (1 << 15) - 1
_CMP_MAX_COORD = (1 << 11) - 1

# token codes of libcaer_cmp
_TIME_HIGH, _TIME_LOW, _ADDR_X, _ADDR_Y, _VECT_BASE_Y, _VECT_8 = 0, 1, 2, 3, 4, 5


# ------------------------------------------------------------------------------------------------ helpers


def _words(buf: np.ndarray, dtype: str) -> np.ndarray:
    w = buf.view(dtype)
    return w if w.flags.aligned else w.copy()


def _check_time_base(time_base) -> int:
    try:
        tb = int(time_base)
    except (TypeError, ValueError):
        raise ParameterError(f"time_base must be an integer (ns), not {time_base!r}") from None
    if tb < 0:
        raise ParameterError(f"time_base must be >= 0 ns, got {tb}")
    return tb


def _as_events(events) -> np.ndarray:
    arr = np.asarray(events)
    if arr.dtype.names is None or not {"x", "y", "t", "p"} <= set(arr.dtype.names):
        raise ParameterError("events must be a structured array with fields x, y, t, p")
    arr = arr.reshape(-1)
    if arr.dtype == EVENT_DTYPE:
        return arr
    out = np.empty(arr.shape[0], dtype=EVENT_DTYPE)
    for name in ("x", "y", "t", "p"):
        out[name] = arr[name]
    return out


@njit(cache=True, nogil=True, boundscheck=False)
def _scan_events(x, y, t, p, width, height, t_min, max_gap):  # pragma: no cover
    """(problem code, event index): 0 fine, 1 not sorted, 2 t below t_min, 3 outside, 4 polarity, 5 gap."""
    n = t.shape[0]
    if n and t[0] < t_min:
        return 2, 0
    for i in range(n):
        if i and t[i] < t[i - 1]:
            return 1, i
        if i and t[i] - t[i - 1] >= max_gap:
            return 5, i
        if x[i] >= width or y[i] >= height:
            return 3, i
        if p[i] > 1:
            return 4, i
    return 0, 0


def _check_events(ev: np.ndarray, width: int, height: int, last_t, max_gap: int = 1 << 62) -> None:
    """ParameterError unless the events are sorted, continue ``last_t``, have t >= 0, fit the sensor, have
    p in {0, 1} and no gap of ``max_gap`` µs or more."""
    t = ev["t"]
    t_min = 0 if last_t is None else max(0, int(last_t))
    code, i = _scan_events(
        ev["x"], ev["y"], t, ev["p"], np.int64(width), np.int64(height), np.int64(t_min), np.int64(max_gap)
    )
    if code == 1:
        raise ParameterError(f"events must be sorted by t: event {i} (t={int(t[i])}) comes after t={int(t[i - 1])}")
    if code == 2:
        if int(t[0]) < 0:
            raise ParameterError(f"event times must be >= 0 µs, got t={int(t[0])}")
        raise ParameterError(f"events must continue the stream in time order: t={int(t[0])} < previous {last_t}")
    if code == 3:
        raise ParameterError(
            f"event {i} at x={int(ev['x'][i])}, y={int(ev['y'][i])} is outside the {width}x{height} sensor"
        )
    if code == 4:
        raise ParameterError(f"polarity p must be 0 or 1 (event {i} has {int(ev['p'][i])})")
    if code == 5:
        raise ParameterError(
            f"events {i - 1} and {i} are {int(t[i]) - int(t[i - 1])} µs apart: one payload "
            f"cannot hold a gap of 2**31 µs or more; encode them in separate batches"
        )


# ------------------------------------------------------------------------------------ libcaer (8 bytes)


@njit(cache=True, nogil=True, boundscheck=False)
def _decode_libcaer(words, base_us, wraps, last_ts, width, height, ox, oy, ot, op):  # pragma: no cover
    """words: uint32 pairs (data, timestamp). Returns (n_out, wraps, last_ts, invalid, out_of_bounds)."""
    n = words.shape[0] // 2
    k = 0
    invalid = 0
    outside = 0
    for i in range(n):
        d = np.int64(words[2 * i])
        ts = np.int64(words[2 * i + 1] & 0x7FFFFFFF)
        if ts < last_ts:
            wraps += 1
        last_ts = ts
        if (d & 1) == 0:
            invalid += 1
            continue
        x = (d >> 17) & 0x7FFF
        y = (d >> 2) & 0x7FFF
        if x >= width or y >= height:
            outside += 1
            continue
        ox[k] = x
        oy[k] = y
        ot[k] = base_us + ts + wraps * 2147483648
        op[k] = (d >> 1) & 1
        k += 1
    return k, wraps, last_ts, invalid, outside


def _trim(arr: np.ndarray, n: int) -> np.ndarray:
    if n == arr.shape[0]:
        return arr
    return copy_events(arr[:n])


@njit(cache=True, nogil=True, boundscheck=False)
def _encode_libcaer(x, y, t, p, high, out):  # pragma: no cover
    for i in range(t.shape[0]):
        out[2 * i] = (np.uint32(x[i]) << 17) | (np.uint32(y[i]) << 2) | (np.uint32(p[i]) << 1) | np.uint32(1)
        out[2 * i + 1] = np.uint32((t[i] - high) & 0x7FFFFFFF)


class _Sized:
    """A codec of one sensor size: ``width`` and ``height`` checked against ``size_limit``, then :meth:`reset`."""

    size_limit = 0  # coordinates are below this

    def __init__(self, width: int, height: int):
        self.width, self.height = check_size(width, height, self.size_limit)
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError


class _Decoder(_Sized):
    """What both libcaer decoders share beyond the size: the bytes of a cut word kept for the next payload."""

    _pending: np.ndarray

    @property
    def pending_bytes(self) -> int:
        return int(self._pending.shape[0])

    def _accept(self, payload, time_base: int) -> tuple[np.ndarray, int]:
        """A payload's bytes as uint8 (counted in ``bytes_in``) and its checked ``time_base``."""
        buf = as_uint8(payload)
        time_base = _check_time_base(time_base)
        self.bytes_in += buf.shape[0]
        return buf, time_base


class LibcaerDecoder(_Decoder):
    """Stateful decoder of ``libcaer`` payloads (see the module docstring).

    Counters since construction or :meth:`reset`: ``invalid_events``, ``out_of_bounds``, ``rollovers``
    (31-bit timestamp rollovers seen inside the stream), ``bytes_in``; ``pending_bytes`` is the size of a cut
    event waiting for its end (0..7).
    """

    encoding = "libcaer"
    event_bytes = 8
    size_limit = _LIBCAER_MAX_COORD + 1

    def reset(self) -> None:
        """Forget everything about the stream (new recording or camera restart)."""
        self._pending = np.empty(0, dtype=np.uint8)
        self._time_base = None
        self._wraps = 0
        self._last_ts = 0
        self.invalid_events = 0
        self.out_of_bounds = 0
        self.rollovers = 0
        self.bytes_in = 0

    def _run(self, buf: np.ndarray) -> np.ndarray:
        words = _words(buf, "<u4")
        out = np.empty(words.shape[0] // 2, dtype=EVENT_DTYPE)
        wraps0 = self._wraps
        k, self._wraps, self._last_ts, inv, oob = _decode_libcaer(
            words,
            np.int64(self._time_base // 1000),
            np.int64(self._wraps),
            np.int64(self._last_ts),
            np.int64(self.width),
            np.int64(self.height),
            out["x"],
            out["y"],
            out["t"],
            out["p"],
        )
        self.rollovers += int(self._wraps) - wraps0
        self.invalid_events += int(inv)
        self.out_of_bounds += int(oob)
        return _trim(out, int(k))

    def decode(self, payload, time_base: int = 0):
        """Decode one payload (``time_base`` in ns, as in the message): (events, triggers)."""
        buf, time_base = self._accept(payload, time_base)
        parts = []
        if self._pending.shape[0]:
            need = 8 - self._pending.shape[0]
            head = np.concatenate([self._pending, buf[:need]])
            if head.shape[0] < 8:
                self._pending = head
                return empty_events(), empty_triggers()
            parts.append(self._run(head))  # the cut event belongs to the packet where it began
            buf = buf[need:]
        if time_base != self._time_base:
            self._time_base = time_base
            self._wraps = 0
            self._last_ts = 0
        whole = (buf.shape[0] // 8) * 8
        self._pending = buf[whole:].copy()
        parts.append(self._run(buf[:whole]))
        events = parts[0] if len(parts) == 1 else concat_events(parts)
        return events, empty_triggers()


class _Encoder(_Sized):
    """What both libcaer encoders share beyond the size: the last time for the sort check across batches, and
    ``encode(events) -> (bytes, time_base_ns)``; a subclass gives ``_encode(ev)`` for a non-empty batch."""

    def reset(self) -> None:
        self._last_t = None

    def encode(self, events):
        ev = _as_events(events)
        if ev.shape[0] == 0:
            return b"", 0
        payload, time_base = self._encode(ev)
        self._last_t = int(ev["t"][-1])
        return payload, time_base

    def _encode(self, ev):
        raise NotImplementedError


class LibcaerEncoder(_Encoder):
    """``libcaer`` payloads as libcaer_driver publishes them: ``encode(events) -> (bytes, time_base_ns)``.

    ``time_base`` is the first event's t with the low 31 bits cleared, in ns; each event's timestamp is
    ``t mod 2**31``. Events are time-sorted, t >= 0, and a batch has no gap of 2**31 µs or more.
    """

    encoding = "libcaer"
    size_limit = _LIBCAER_MAX_COORD + 1

    def _encode(self, ev):
        _check_events(ev, self.width, self.height, self._last_t, max_gap=ROLLOVER_US)
        t = ev["t"]
        high = (int(t[0]) >> 31) << 31
        out = np.empty(2 * ev.shape[0], dtype="<u4")
        _encode_libcaer(ev["x"], ev["y"], t, ev["p"], np.int64(high), out)
        return out.tobytes(), high * 1000


# --------------------------------------------------------------------------- libcaer_cmp (16-bit tokens)

# decoder state slots (int64 array)
_S_TH, _S_TL, _S_X, _S_VB, _S_VP, _S_UNK, _S_OOB = range(7)


@njit(cache=True, nogil=True, boundscheck=False)
def _count_cmp(tokens):  # pragma: no cover
    """Upper bound of the events in the tokens (ADDR_Y tokens + set bits of VECT_8 tokens), branch-free."""
    n = 0
    for i in range(tokens.shape[0]):
        tok = np.int64(tokens[i])
        code = tok >> 12
        v = tok & 0xFF
        v = v - ((v >> 1) & 0x55)
        v = (v & 0x33) + ((v >> 2) & 0x33)
        v = (v + (v >> 4)) & 0x0F
        n += np.int64(code == _ADDR_Y) + np.int64(code == _VECT_8) * v
    return n


@njit(cache=True, nogil=True, boundscheck=False)
def _decode_cmp(tokens, base_us, state, width, height, ox, oy, ot, op):  # pragma: no cover
    """Decode tokens into the output columns (room for _count_cmp events). Returns the event count."""
    th = state[_S_TH]
    tl = state[_S_TL]
    ex = state[_S_X]
    vb = state[_S_VB]
    vp = state[_S_VP]
    unk = state[_S_UNK]
    oob = state[_S_OOB]
    k = 0
    for i in range(tokens.shape[0]):
        tok = np.int64(tokens[i])
        code = tok >> 12
        if code == _ADDR_Y:
            y = tok & 0x7FF
            if ex < width and y < height:
                ox[k] = ex
                oy[k] = y
                ot[k] = base_us + ((th << 12) | tl)
                op[k] = (tok >> 11) & 1
                k += 1
            else:
                oob += 1
        elif code == _ADDR_X:
            ex = tok & 0x7FF
        elif code == _TIME_LOW:
            tl = tok & 0xFFF
        elif code == _TIME_HIGH:
            th = tok & 0xFFF
        elif code == _VECT_BASE_Y:
            vb = tok & 0x7FF
            vp = (tok >> 11) & 1
        elif code == _VECT_8:
            t = base_us + ((th << 12) | tl)
            for b in range(8):
                if tok & (1 << b):
                    y = vb + b
                    if ex < width and y < height:
                        ox[k] = ex
                        oy[k] = y
                        ot[k] = t
                        op[k] = vp
                        k += 1
                    else:
                        oob += 1
            vb += 8
        else:
            unk += 1
    state[_S_TH] = th
    state[_S_TL] = tl
    state[_S_X] = ex
    state[_S_VB] = vb
    state[_S_VP] = vp
    state[_S_UNK] = unk
    state[_S_OOB] = oob
    return k


class LibcaerCmpDecoder(_Decoder):
    """Stateful decoder of ``libcaer_cmp`` payloads (see the module docstring).

    Counters since construction or :meth:`reset`: ``unknown_words`` (tokens of unknown code skipped),
    ``out_of_bounds`` (events outside the sensor, dropped), ``bytes_in``; ``pending_bytes`` (0 or 1).
    """

    encoding = "libcaer_cmp"
    word_bytes = 2
    size_limit = _CMP_MAX_COORD + 1

    def reset(self) -> None:
        """Forget everything about the stream."""
        self._state = np.zeros(7, dtype=np.int64)
        self._pending = np.empty(0, dtype=np.uint8)
        self._time_base = None
        self.bytes_in = 0

    @property
    def unknown_words(self) -> int:
        return int(self._state[_S_UNK])

    @property
    def out_of_bounds(self) -> int:
        return int(self._state[_S_OOB])

    def _run(self, buf: np.ndarray) -> np.ndarray:
        tokens = _words(buf, "<u2")
        out = np.empty(_count_cmp(tokens), dtype=EVENT_DTYPE)
        k = _decode_cmp(
            tokens,
            np.int64(self._time_base // 1000),
            self._state,
            np.int64(self.width),
            np.int64(self.height),
            out["x"],
            out["y"],
            out["t"],
            out["p"],
        )
        return _trim(out, int(k))

    def decode(self, payload, time_base: int = 0):
        """Decode one payload (``time_base`` in ns, as in the message): (events, triggers)."""
        buf, time_base = self._accept(payload, time_base)
        parts = []
        if self._pending.shape[0]:
            if buf.shape[0] == 0:
                return empty_events(), empty_triggers()
            parts.append(self._run(np.concatenate([self._pending, buf[:1]])))
            buf = buf[1:]
        if time_base != self._time_base:
            self._time_base = time_base
            self._state[_S_TH] = 0
            self._state[_S_TL] = 0
        whole = buf.shape[0] & ~1
        self._pending = buf[whole:].copy()
        parts.append(self._run(buf[:whole]))
        events = parts[0] if len(parts) == 1 else concat_events(parts)
        return events, empty_triggers()


@njit(cache=True, nogil=True, boundscheck=False)
def _encode_cmp(x, y, t, t0, p, out):  # pragma: no cover
    """Tokens for events with times t - t0 < 2**24 µs. Returns the number of tokens."""
    n = x.shape[0]
    k = 0
    cur_t = 0  # decoder time at the start: 0
    cur_x = np.int64(x[0])
    out[k] = (_ADDR_X << 12) | cur_x
    k += 1
    # open group: events of one (t, x, p, 8-row block) with increasing y
    g_mask = 0
    g_block = -1
    g_p = 0
    g_last_y = -1
    g_single_y = 0
    vec_next = -1  # the decoder's base y for a VECT_8 without VECT_BASE_Y (-1: unknown)
    vec_p = -1
    i = 0
    while i <= n:
        flush = i == n
        if not flush:
            ti = np.int64(t[i]) - t0
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            pi = np.int64(p[i])
            flush = g_mask != 0 and (ti != cur_t or xi != cur_x or pi != g_p or (yi >> 3) != g_block or yi <= g_last_y)
        if flush and g_mask != 0:
            if (g_mask & (g_mask - 1)) == 0:
                out[k] = (_ADDR_Y << 12) | (g_p << 11) | g_single_y
                k += 1
            else:
                base = g_block << 3
                if vec_next != base or vec_p != g_p:
                    out[k] = (_VECT_BASE_Y << 12) | (g_p << 11) | base
                    k += 1
                out[k] = (_VECT_8 << 12) | g_mask
                k += 1
                vec_next = base + 8
                vec_p = g_p
            g_mask = 0
        if i == n:
            break
        if ti != cur_t:
            if (ti >> 12) != (cur_t >> 12):
                out[k] = (_TIME_HIGH << 12) | (ti >> 12)
                k += 1
            if (ti & 0xFFF) != (cur_t & 0xFFF):
                out[k] = (_TIME_LOW << 12) | (ti & 0xFFF)
                k += 1
            cur_t = ti
        if xi != cur_x:
            out[k] = (_ADDR_X << 12) | xi
            k += 1
            cur_x = xi
        if g_mask == 0:
            g_block = yi >> 3
            g_p = pi
            g_single_y = yi
        g_mask |= 1 << (yi & 7)
        g_last_y = yi
        i += 1
    return k


class LibcaerCmpEncoder(_Encoder):
    """``libcaer_cmp`` payloads: ``encode(events) -> (bytes, time_base_ns)``, time_base = first t * 1000.

    Events are time-sorted, t >= 0, within 2**11 x 2**11 pixels, and one batch spans less than 2**24 µs.
    """

    encoding = "libcaer_cmp"
    size_limit = _CMP_MAX_COORD + 1

    def _encode(self, ev):
        _check_events(ev, self.width, self.height, self._last_t)
        t = ev["t"]
        t0 = int(t[0])
        if int(t[-1]) - t0 >= CMP_SPAN_US:
            raise ParameterError(
                f"events span {int(t[-1]) - t0} µs: one libcaer_cmp payload holds less than "
                f"2**24 µs; encode them in separate batches"
            )
        # worst case per event: TIME_HIGH, TIME_LOW, ADDR_X and one token of its group; + the first ADDR_X
        out = np.empty(4 * ev.shape[0] + 1, dtype="<u2")
        k = _encode_cmp(ev["x"], ev["y"], t, np.int64(t0), ev["p"], out)
        return out[:k].tobytes(), t0 * 1000
