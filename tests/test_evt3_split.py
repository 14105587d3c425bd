"""Cutting EVT3 streams into packets by time without decoding (the EVK4 node's passthrough)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from microexp.events.codecs import make_decoder
from microexp.events.dtype import make_events
from microexp.events.evt3 import Evt3Encoder
from microexp.events.evt3_split import Evt3TimeState, split_evt3, trigger_words, word_times


def random_stream(seed, n, span_us):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span_us, n)) + 5_000_000
    t -= (t[0] >> 24) << 24  # EVT3 carries 24 bits: a stream's first time must lie in the first period
    return make_events(rng.integers(0, 1280, n), rng.integers(0, 720, n), t, rng.integers(0, 2, n))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 4000),
    span=st.integers(1, 40_000_000),
    packet_us=st.sampled_from([100, 1000, 33_000]),
    chunks=st.integers(1, 5),
)
def test_packets_decode_to_the_stream_and_respect_their_time_span(seed, n, span, packet_us, chunks):
    events = random_stream(seed, n, span)
    words = np.frombuffer(Evt3Encoder(1280, 720).encode(events)[0], "<u2")
    state = Evt3TimeState()
    times = np.concatenate([word_times(c, state) for c in np.array_split(words, chunks)])
    assert np.array_equal(times, word_times(words, Evt3TimeState()))  # state carries across chunks
    dec = make_decoder("evt3", 1280, 720)
    out = []
    for a, b, t0 in split_evt3(words, packet_us, max_bytes=4096):
        ev, _ = dec.decode(words[a:b].tobytes())
        if len(ev) and t0 >= 0:
            assert ev["t"].min() >= t0
            # a word's time is a lower bound between a TIME_HIGH and its TIME_LOW (decoders keep the previous
            # low bits there): events after a TIME_HIGH the encoder left unrefined may lie one step later
            assert ev["t"].max() < t0 - t0 % packet_us + packet_us + 4096 or b - a >= 2048
        out.append(ev)
    got = np.concatenate(out)
    assert np.array_equal(got, events)


def test_trigger_words_decode_alone():
    words = np.array([0x8000 | 5, 0x6000 | 7, 0xA001 | (3 << 8), 0x6000 | 9, 0xA000 | (3 << 8)], np.uint16)
    times = word_times(words, Evt3TimeState())
    ev, tr = make_decoder("evt3", 1280, 720).decode(trigger_words(words, times).tobytes())
    assert len(ev) == 0
    assert tr["t"].tolist() == [(5 << 12) | 7, (5 << 12) | 9] and tr["value"].tolist() == [1, 0]
    assert tr["id"].tolist() == [3, 3]


def with_triggers(words: np.ndarray, rng, k: int) -> np.ndarray:
    """``words`` with ``k`` EXT_TRIGGER words put in after random time words."""
    timed = np.flatnonzero(np.isin(words >> 12, (0x6, 0x8)))
    at = np.sort(rng.choice(timed, size=min(k, len(timed)), replace=False)) + 1
    trig = (0xA000 | (rng.integers(0, 16, len(at)) << 8) | rng.integers(0, 2, len(at))).astype(np.uint16)
    return np.insert(words, at, trig)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 3000),
    span=st.integers(1, 40_000_000),
    packet_us=st.sampled_from([100, 1000, 33_000]),
    max_bytes=st.sampled_from([64, 4096, 1 << 20]),
)
def test_cutter_makes_the_same_packets_whatever_the_pieces(seed, n, span, packet_us, max_bytes):
    """A stream fed in pieces of random byte length (odd ones too) gives the packets of the whole stream
    cut at once: same words, same first and last times, the trigger edges of each packet's own words."""
    from microexp.events.evt3_split import Evt3Cutter

    rng = np.random.default_rng(seed)
    words = with_triggers(np.frombuffer(Evt3Encoder(1280, 720).encode(random_stream(seed, n, span))[0], "<u2"), rng, 5)
    whole = Evt3Cutter(packet_us, max_bytes)
    ref = whole.add_words(words) + whole.flush()
    cutter = Evt3Cutter(packet_us, max_bytes)
    data, got, i = words.tobytes(), [], 0
    while i < len(data):
        j = i + int(rng.integers(1, 3000))
        got += cutter.feed(data[i:j])
        i = j
    got += cutter.flush()
    assert [p.words.tolist() for p in got] == [p.words.tolist() for p in ref]
    assert [(p.t_first_us, p.t_last_us) for p in got] == [(p.t_first_us, p.t_last_us) for p in ref]
    assert b"".join(p.words.tobytes() for p in got) == data
    assert all(p.nbytes <= max(max_bytes, 2) for p in got)
    times = word_times(words, Evt3TimeState())
    starts = np.cumsum([0] + [len(p.words) for p in ref])
    for p, a, b in zip(ref, starts[:-1], starts[1:]):
        assert p.t_first_us == times[a] and p.t_last_us == times[b - 1]
        assert np.array_equal(p.trigger_words, trigger_words(words[a:b], times[a:b]))
    triggers = int(np.count_nonzero((words >> 12) == 0xA))
    assert triggers == min(5, int(np.count_nonzero(np.isin(words >> 12, (0x6, 0x8)))))
    assert cutter.events_in == n and cutter.triggers_in == triggers and cutter.bytes_in == len(data)


def test_cutter_flush_closes_the_open_packet_early():
    """Nothing came in time: the open packet goes out; the next piece opens a new one at its first word."""
    from microexp.events.evt3_split import Evt3Cutter

    words = np.frombuffer(Evt3Encoder(1280, 720).encode(random_stream(1, 2000, 10_000))[0], "<u2")
    cutter = Evt3Cutter(1000, 1 << 20)
    first = cutter.add_words(words[:500])
    early = cutter.flush()
    rest = cutter.add_words(words[500:]) + cutter.flush()
    assert len(early) == 1 and cutter.flush() == []
    assert b"".join(p.words.tobytes() for p in first + early + rest) == words.tobytes()
    assert sum(len(p.words) for p in first + early) == 500


def test_event_packet_cdr_is_what_rclpy_reads():
    """The EVK4 node's one-copy serializer: rclpy deserializes every field, the payload from several pieces."""
    from rclpy.serialization import deserialize_message

    from event_camera_msgs.msg import EventPacket
    from microexp.bags.cdr import event_packet_cdr, event_packet_fields

    for frame_id, encoding, n in [("evk4", "evt3", 0), ("", "libcaer_cmp", 7), ("00000307", "evt3", 1001)]:
        w = np.arange(n, dtype=np.uint16)
        raw = event_packet_cdr(
            1_796_656_448_123_456_789, frame_id, 1280, 720, 2**40 + 5, [w[: n // 3], w[n // 3 :]], encoding, 77
        )
        msg = deserialize_message(raw, EventPacket)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
            1_796_656_448,
            123_456_789,
            frame_id,
        )
        assert (msg.width, msg.height, msg.seq, msg.time_base, msg.encoding) == (1280, 720, 2**40 + 5, 77, encoding)
        assert not msg.is_bigendian and bytes(msg.events) == w.tobytes()
        assert event_packet_fields(raw) == (2**40 + 5, 2 * n, encoding)
