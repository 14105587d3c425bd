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
    for a, b, t0 in split_evt3(words, times, packet_us, max_bytes=4096):
        ev, _ = dec.decode(words[a:b].tobytes())
        if len(ev) and t0 >= 0:
            assert ev["t"].min() >= t0
            assert ev["t"].max() < t0 - t0 % packet_us + packet_us or b - a >= 2048
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
