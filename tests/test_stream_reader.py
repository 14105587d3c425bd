"""The one EventPacket stream reader (microexp.events.stream): decoding per encoding and geometry, seq gaps,
stream changes, format errors; no DDS, no bag."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.events import DAVIS, packets

from microexp.errors import FormatError, ParameterError
from microexp.events.codecs import make_decoder
from microexp.events.dtype import concat_events, make_events
from microexp.events.stream import Packet, SeqTracker, StreamReader


def random_events(width, height, n, t0, span_us, seed):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + span_us, n))
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def same_events(a, b):
    return a.shape == b.shape and all(np.array_equal(a[f], b[f]) for f in ("x", "y", "t", "p"))


class Faulty:
    """Wraps a decoder; the payload ``b"bad"`` raises FormatError (the codecs' own decoders rarely can)."""

    def __init__(self, inner):
        self.inner = inner
        self.resets = 0

    def decode(self, payload, time_base=0):
        if bytes(payload) == b"bad":
            raise FormatError(None, "corrupt payload")
        return self.inner.decode(payload, time_base=time_base)

    def reset(self):
        self.resets += 1
        self.inner.reset()


@pytest.mark.parametrize("encoding", ["evt3", "libcaer"])
def test_a_clean_stream_decodes_as_one_plain_decoder_and_counts_every_packet(encoding):
    events = random_events(*DAVIS, 3000, 1_000_000, 40_000, seed=1)
    pkts = packets(encoding, *DAVIS, events)
    reader = StreamReader()
    got = [reader.feed(p) for p in pkts]
    assert got[0].opened and not got[0].changed and not any(d.opened for d in got[1:])
    assert not any(d.seq_gap or d.error for d in got)
    assert same_events(concat_events([d.events for d in got]), events)
    assert reader.counts["packets"] == len(pkts) and reader.counts["events"] == len(events)
    assert reader.counts["stream_changes"] == 0 and reader.counts["decode_errors"] == 0
    assert (reader.seq.gaps, reader.seq.missing, reader.seq.restarts) == (0, 0, 0)
    assert reader.key == (encoding, *DAVIS)


def test_seq_gaps_count_missing_packets_and_restarts_and_keep_the_decoder():
    events = random_events(*DAVIS, 2000, 1_000_000, 20_000, seed=2)
    pkts = packets("evt3", *DAVIS, events)
    assert len(pkts) >= 12
    # renumber: a jump of 3 after packet 4, a restart (seq back to 0) after packet 9; every payload still
    # arrives, so the decoder must not be reset: the events come out as from one plain decoder
    seqs = list(range(5)) + [8 + k for k in range(5)] + list(range(len(pkts) - 10))
    renumbered = [Packet(p.encoding, p.width, p.height, s, p.payload, p.time_base) for p, s in zip(pkts, seqs)]
    reader = StreamReader()
    got = [reader.feed(p) for p in renumbered]
    gaps = [(i, d.missing) for i, d in enumerate(got) if d.seq_gap]
    assert gaps == [(5, 3), (10, 0)]
    assert (reader.seq.gaps, reader.seq.missing, reader.seq.restarts, reader.seq.first) == (2, 3, 1, 0)
    assert same_events(concat_events([d.events for d in got]), events)
    plain = make_decoder("evt3", *DAVIS)
    assert same_events(concat_events([plain.decode(p.payload, p.time_base)[0] for p in pkts]), events)


def test_an_encoding_change_opens_a_new_decoder_and_is_not_a_seq_gap():
    first = random_events(*DAVIS, 1500, 1_000_000, 15_000, seed=3)
    second = random_events(*DAVIS, 1500, 5_000_000, 15_000, seed=4)
    a = packets("evt3", *DAVIS, first, seq0=100)
    b = packets("libcaer", *DAVIS, second, seq0=0)  # another driver: its seq starts over
    reader = StreamReader()
    got = [reader.feed(p) for p in a + b]
    change = got[len(a)]
    assert change.opened and change.changed and not change.seq_gap
    assert reader.counts["stream_changes"] == 1 and reader.seq.gaps == 0
    assert same_events(concat_events([d.events for d in got[: len(a)]]), first)
    assert same_events(concat_events([d.events for d in got[len(a) :]]), second)
    assert reader.key == ("libcaer", *DAVIS)


def test_a_geometry_change_with_the_same_encoding_is_a_new_stream():
    first = random_events(*DAVIS, 800, 1_000_000, 8_000, seed=5)
    second = random_events(640, 480, 800, 2_000_000, 8_000, seed=6)
    a = packets("libcaer", *DAVIS, first)
    b = packets("libcaer", 640, 480, second, seq0=len(a))
    reader = StreamReader()
    got = [reader.feed(p) for p in a]
    decoder = reader.decoder
    got_b = [reader.feed(p) for p in b]
    assert reader.decoder is not decoder and reader.decoder.width == 640
    assert got_b[0].changed and reader.counts["stream_changes"] == 1
    assert same_events(concat_events([d.events for d in got_b]), second)
    assert int(concat_events([d.events for d in got_b])["x"].max()) >= DAVIS[0]  # outside the old geometry
    assert same_events(concat_events([d.events for d in got]), first)


def test_a_format_error_is_counted_resets_the_decoder_and_the_stream_goes_on():
    events = random_events(*DAVIS, 1000, 1_000_000, 10_000, seed=7)
    pkts = packets("libcaer", *DAVIS, events)
    reader = StreamReader()
    reader.feed(pkts[0])
    reader.decoder = faulty = Faulty(reader.decoder)
    bad = Packet("libcaer", *DAVIS, 1, b"bad", pkts[1].time_base)
    d = reader.feed(bad)
    assert isinstance(d.error, FormatError) and len(d.events) == 0 and not d.seq_gap
    assert reader.counts["decode_errors"] == 1 and faulty.resets == 1
    # the packets after it (seq 2.. : no gap) decode as before
    rest = [reader.feed(p) for p in pkts[2:]]
    assert not any(r.error or r.seq_gap for r in rest)
    assert same_events(
        concat_events([r.events for r in rest]),
        concat_events([make_decoder("libcaer", *DAVIS).decode(p.payload, p.time_base)[0] for p in pkts[2:]]),
    )
    assert reader.counts["packets"] == len(pkts)


def test_a_strict_reader_raises_the_format_error_after_counting_and_resetting():
    reader = StreamReader(strict=True)
    reader.open("evt3", *DAVIS)
    reader.decoder = faulty = Faulty(reader.decoder)
    with pytest.raises(FormatError, match="corrupt payload"):
        reader.feed(Packet("evt3", *DAVIS, 0, b"bad"))
    assert reader.counts["decode_errors"] == 1 and faulty.resets == 1 and reader.counts["packets"] == 1


def test_an_unknown_encoding_raises_and_leaves_the_stream_as_it_was():
    events = random_events(*DAVIS, 500, 1_000_000, 3_000, seed=8)
    pkts = packets("evt3", *DAVIS, events)
    reader = StreamReader()
    reader.feed(pkts[0])
    decoder = reader.decoder
    with pytest.raises(ParameterError, match="not supported"):
        reader.feed(Packet("mystery", *DAVIS, 1, b"\0" * 8))
    assert reader.decoder is decoder and reader.key == ("evt3", *DAVIS) and reader.counts["packets"] == 1
    assert not reader.feed(pkts[1]).seq_gap and reader.counts["stream_changes"] == 0


def test_packet_from_msg_and_the_seq_tracker_reexport():
    from types import SimpleNamespace

    from microexp.bags import cdr

    msg = SimpleNamespace(
        encoding="evt3",
        width=1280,
        height=720,
        seq=7,
        events=b"\1\2",
        time_base=9,
        header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=5), frame_id="f"),
    )
    p = Packet.from_msg(msg)
    assert p == Packet("evt3", 1280, 720, 7, b"\1\2", 9, 3_000_000_005, "f") and p.key == ("evt3", 1280, 720)
    assert cdr.SeqTracker is SeqTracker
    t = SeqTracker()
    assert [t.update(s) for s in (5, 6, 9, 3, 4)] == [0, 0, 2, -1, 0]
    assert t.as_dict() == {"seq_gaps": 2, "seq_missing": 2, "seq_restarts": 1} and t.first == 5


def test_two_publishers_on_one_topic_do_not_fake_a_loss():
    """Two writers' seq numbers interleaved (another node publishing the same topic): each run is followed apart,
    so no packet counts as missing; a real gap inside one run still does."""
    import itertools

    for first_b in (False, True):
        t = SeqTracker()
        a, b = itertools.count(100), itertools.count(1_000_000)
        for i in range(3000):
            t.update(next(b) if (i % 3 == 0) != first_b else next(a))
        assert t.missing == 0 and t.streams == 2, (first_b, t.as_dict())
        next(a), next(a)  # two packets of the first stream lost
        t.update(next(a))
        assert t.missing == 2


def test_merged_evt3_runs_decode_to_the_same_events_and_other_encodings_pass_one_by_one():
    """merge_evt3 (the monitor decodes a turn's packets per run): consecutive EVT3 packets of one geometry become one
    packet whose events equal those of the parts; a geometry change or another encoding ends a run."""
    from microexp.events.stream import merge_evt3

    first = random_events(*DAVIS, 4000, 1_000_000, 40_000, seed=7)
    second = random_events(640, 480, 500, 1_100_000, 5_000, seed=8)
    third = random_events(*DAVIS, 300, 1_200_000, 5_000, seed=9)
    evt3 = packets("evt3", *DAVIS, first)
    other = packets("evt3", 640, 480, second, seq0=len(evt3))
    caer = packets("libcaer", *DAVIS, third)
    merged = merge_evt3(evt3 + other + caer)
    assert [n for _, n in merged] == [len(evt3), len(other)] + [1] * len(caer)
    assert merged[0][0].seq == evt3[-1].seq and merged[0][0].key == ("evt3", *DAVIS)
    one, two = (make_decoder("evt3", *merged[i][0].key[1:]) for i in (0, 1))
    assert same_events(one.decode(merged[0][0].payload)[0], first)
    assert same_events(two.decode(merged[1][0].payload)[0], second)
    assert [p for p, _ in merged[2:]] == caer and merge_evt3([]) == []
