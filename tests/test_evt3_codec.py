"""EVT3 (and EVT2) stream codecs: round trips through packets split anywhere, time unwrapping and bit errors,
bounds, triggers, reserved words, and the checks on what the encoders accept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microexp.errors import ParameterError
from microexp.events.codecs import make_decoder, make_encoder
from microexp.events.dtype import EVENT_DTYPE, make_events
from microexp.events.evt2 import Evt2Decoder, Evt2Encoder
from microexp.events.evt3 import Evt3Decoder, Evt3Encoder

WRAP = 1 << 24

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SIZES = [(1280, 720), (640, 480), (2048, 2048), (13, 7)]


@st.composite
def event_streams(draw, t0_max=WRAP - 1):
    """(width, height, events): time-sorted bursts; a burst is one time, row and polarity with increasing x
    (what makes the encoder write vector words) or a single event; gaps range from 0 to several 2**24 wraps."""
    width, height = draw(st.sampled_from(SIZES))
    t = draw(st.integers(0, t0_max))
    xs, ys, ts, ps = [], [], [], []
    for burst in range(draw(st.integers(0, 40))):
        if burst:
            t += draw(
                st.one_of(
                    st.just(0),
                    st.integers(1, 50),
                    st.integers(51, 70_000),
                    st.integers(70_001, 3 * WRAP),
                    st.integers(3 * WRAP, 40 * WRAP),
                )
            )
        y = draw(st.integers(0, height - 1))
        p = draw(st.integers(0, 1))
        if draw(st.booleans()):
            cols = sorted(draw(st.sets(st.integers(0, width - 1), min_size=1, max_size=min(width, 40))))
        else:
            cols = [draw(st.integers(0, width - 1))]
        for x in cols:
            xs.append(x), ys.append(y), ts.append(t), ps.append(p)
    return width, height, make_events(np.array(xs, dtype=np.int64), ys, ts, ps)


def _encode_in_packets(enc, events, cuts):
    payload = b""
    bounds = [0, *sorted(set(cuts)), events.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk, time_base = enc.encode(events[a:b])
        assert time_base == 0
        payload += chunk
    return payload


def _decode_split(dec, payload, cuts):
    evs, trs = [], []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(payload))), len(payload)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        e, t = dec.decode(payload[a:b])
        evs.append(e)
        trs.append(t)
    return np.concatenate(evs) if evs else np.empty(0, EVENT_DTYPE), np.concatenate(trs) if trs else None


@SETTINGS
@given(stream=event_streams(), data=st.data())
def test_evt3_round_trip_through_any_split(stream, data):
    width, height, events = stream
    n = events.shape[0]
    packet_cuts = data.draw(st.lists(st.integers(0, n), max_size=5))
    payload = _encode_in_packets(Evt3Encoder(width, height), events, packet_cuts)
    assert len(payload) % 2 == 0
    byte_cuts = data.draw(st.lists(st.integers(0, max(len(payload), 1)), max_size=8))
    byte_cuts += data.draw(st.lists(st.integers(0, max(len(payload) // 2 - 1, 0)).map(lambda k: 2 * k + 1), max_size=3))
    dec = Evt3Decoder(width, height)
    got, trig = _decode_split(dec, payload, byte_cuts)
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, events)
    assert trig is None or trig.shape[0] == 0
    assert dec.out_of_bounds == dec.unknown_words == dec.time_jumps == dec.pending_bytes == 0


@SETTINGS
@given(stream=event_streams(t0_max=(1 << 34) - 1), data=st.data())
def test_evt2_round_trip_through_any_split(stream, data):
    width, height, events = stream
    events = events[events["t"] < (1 << 34)]  # EVT2 time has 34 bits; the first epoch is recovered
    packet_cuts = data.draw(st.lists(st.integers(0, events.shape[0]), max_size=4))
    payload = _encode_in_packets(Evt2Encoder(width, height), events, packet_cuts)
    byte_cuts = data.draw(st.lists(st.integers(0, max(len(payload), 1)), max_size=8))
    dec = Evt2Decoder(width, height)
    got, _ = _decode_split(dec, payload, byte_cuts)
    np.testing.assert_array_equal(got, events)
    assert dec.pending_bytes == dec.out_of_bounds == dec.time_jumps == 0


def _words(*ws):
    return np.array(ws, dtype="<u2").tobytes()


def test_same_time_runs_become_vector_words():
    xs = np.arange(100, 124)
    ev = make_events(xs, np.full(24, 5), np.full(24, 1000), np.ones(24))
    payload, _ = Evt3Encoder(1280, 720).encode(ev)
    types = np.frombuffer(payload, "<u2") >> 12
    assert (types == 0x3).sum() == 1 and (types == 0x4).sum() == 2 and (types == 0x2).sum() == 0
    assert len(payload) < 24  # well below one word per event
    np.testing.assert_array_equal(Evt3Decoder(1280, 720).decode(payload)[0], ev)


def test_time_wraps_every_2_pow_24_and_stays_monotone():
    # TIME_HIGH 4095 -> 0 -> 1 is one wrap: t keeps growing
    payload = _words(0x8FFF, 0x6FF0, 0x0001, 0x2005, 0x8000, 0x6010, 0x2006, 0x8001, 0x6000, 0x2007)
    ev, _ = Evt3Decoder(1280, 720).decode(payload)
    assert ev["t"].tolist() == [(4095 << 12) | 0xFF0, WRAP + 0x010, WRAP + 4096]


@pytest.mark.parametrize("high", [100, 3000])
def test_spurious_time_high_bit_does_not_add_a_wrap(high):
    # bit 11 flipped in one TIME_HIGH word (2048 steps away): only the event after it moves
    base = high << 12
    payload = _words(
        0x8000 | high, 0x6000, 0x0001, 0x2001, 0x8000 | (high ^ 0x800), 0x2002, 0x8000 | (high + 1), 0x6005, 0x2003
    )
    dec = Evt3Decoder(1280, 720)
    ev, _ = dec.decode(payload)
    assert ev["t"][0] == base and ev["t"][2] == ((high + 1) << 12) + 5
    assert abs(int(ev["t"][1]) - base) == 2048 << 12  # the bad word moves its events by 8.4 s, not 16.7 s
    assert dec.time_jumps == 1


def test_forward_time_high_bit_error_heals_and_later_wraps_count_once():
    # bit 6 flipped forward (4000 -> 4064): accepted; the correct words that follow are adopted again
    payload = _words(
        0x8000 | 4000,
        0x6000,
        0x0001,
        0x2001,
        0x8000 | (4000 | 0x40),
        0x2002,
        0x8000 | 4000,
        0x6010,
        0x2003,
        0x8000 | 4001,
        0x6000,
        0x2004,
        0x8000 | 4001,
        0x2005,
        0x8000 | 4095,
        0x2006,
        0x8000,
        0x2007,
    )
    dec = Evt3Decoder(1280, 720)
    ev, _ = dec.decode(payload)
    t = ev["t"].tolist()
    assert t[1] == 4064 << 12  # the bad word itself cannot be told apart from a genuine step
    assert t[0] == 4000 << 12 and t[2] == (4000 << 12) + 16 and t[3] == t[4] == 4001 << 12
    assert t[5] == 4095 << 12 and t[6] == WRAP
    assert dec.time_jumps == 2


def test_odd_byte_split_keeps_the_dangling_byte():
    payload = _words(0x8001, 0x6002, 0x0003, 0x2804)
    dec = Evt3Decoder(1280, 720)
    a, _ = dec.decode(payload[:7])
    assert a.shape[0] == 0 and dec.pending_bytes == 1
    b, _ = dec.decode(payload[7:])
    assert b.tolist() == [(4, 3, 4098, 1)] and dec.pending_bytes == 0


def test_out_of_sensor_events_are_dropped_and_counted():
    # width 10, height 4: ADDR_X x=20 (outside), y=5 row (outside), vector spilling over x=10
    payload = _words(0x8000, 0x6000, 0x0001, 0x2014, 0x2003, 0x3008, 0x4FFF, 0x0005, 0x2001)
    dec = Evt3Decoder(10, 4)
    ev, _ = dec.decode(payload)
    assert ev["x"].tolist() == [3, 8, 9]
    assert dec.out_of_bounds == 1 + 10 + 1


def test_triggers_reserved_words_and_reset():
    payload = _words(0x8002, 0x6003, 0xA301, 0x1234, 0xE000, 0xF000, 0x7001, 0xA300)
    dec = make_decoder("evt3", width=1280, height=720)
    ev, tr = dec.decode(payload, time_base=123)
    assert ev.shape[0] == 0
    assert tr.tolist() == [((2 << 12) | 3, 3, 1), ((2 << 12) | 3, 3, 0)]
    assert dec.unknown_words == 1 and dec.first_unknown_offset == 6
    dec.reset()
    assert dec.unknown_words == 0 and dec.first_unknown_offset is None


def test_many_triggers_and_large_payloads_grow_their_outputs():
    words = np.tile(np.array([0xA101, 0xA100], dtype="<u2"), 5000)
    _, tr = Evt3Decoder(64, 64).decode(words.tobytes())
    assert tr.shape[0] == 10000 and tr["id"].max() == 1
    # dense vector words: more events than words, beyond the first estimate of the large-input path
    dense = np.concatenate([[0x8000, 0x6000, 0x0000, 0x3000], np.tile([0x4FFF, 0x3000], 100_000)]).astype("<u2")
    ev, _ = Evt3Decoder(64, 64).decode(dense.tobytes())
    assert ev.shape[0] == 1_200_000 and ev["x"].max() == 11


def test_encoder_rejects_what_it_cannot_write():
    enc = make_encoder("evt3", width=64, height=32)
    with pytest.raises(ParameterError, match="sorted"):
        enc.encode(make_events([1, 2], [1, 1], [10, 5], [0, 0]))
    with pytest.raises(ParameterError, match="outside"):
        enc.encode(make_events([64], [1], [10], [0]))
    with pytest.raises(ParameterError, match=">= 0"):
        enc.encode(make_events([1], [1], [-1], [0]))
    with pytest.raises(ParameterError, match="polarity"):
        enc.encode(make_events([1], [1], [1], [2]))
    with pytest.raises(ParameterError, match="structured"):
        enc.encode(np.zeros(3))
    enc.encode(make_events([1], [1], [100], [0]))
    with pytest.raises(ParameterError, match="continue the stream"):
        enc.encode(make_events([1], [1], [99], [0]))
    assert enc.encode(make_events([], [], [], [])) == (b"", 0)
    with pytest.raises(ParameterError):
        Evt3Decoder(0, 10)


def test_other_event_dtypes_are_accepted():
    dt = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    ev = np.zeros(3, dtype=dt)
    ev["t"], ev["x"], ev["y"], ev["p"] = [5, 6, 7], [1, 2, 3], [4, 5, 6], [1, 0, 1]
    payload, _ = Evt3Encoder(16, 16).encode(ev)
    got, _ = Evt3Decoder(16, 16).decode(bytearray(payload))
    assert got["x"].tolist() == [1, 2, 3] and got["t"].tolist() == [5, 6, 7]
    got2, _ = Evt3Decoder(16, 16).decode(np.frombuffer(payload, dtype=np.uint8))
    np.testing.assert_array_equal(got, got2)


def test_evt2_words_time_and_triggers():
    def w(typ, payload):
        return (typ << 28) | payload

    high = (1 << 28) - 2
    words = np.array(
        [
            w(0x8, high),
            w(0x1, (7 << 22) | (12 << 11) | 3),
            w(0x0, (1 << 22) | (700 << 11) | 3),
            w(0xA, (9 << 22) | (17 << 8) | 1),
            w(0x5, 0),
            w(0x8, high + 1),
            w(0x8, 0),
            w(0x0, (2 << 22) | (1 << 11) | 2),
        ],
        dtype="<u4",
    )
    dec = Evt2Decoder(640, 480)
    ev, tr = dec.decode(words.tobytes())
    assert ev.tolist() == [(12, 3, (high << 6) | 7, 1), (1, 2, (1 << 34) | 2, 0)]
    assert dec.out_of_bounds == 1 and dec.unknown_words == 1 and dec.first_unknown_offset == 16
    assert dec.time_jumps == 0
    assert tr.tolist() == [((high << 6) | 9, 17, 1)]
