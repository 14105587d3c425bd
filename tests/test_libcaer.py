"""libcaer / libcaer_cmp payload codecs: the real bags of event_camera_codecs and event_camera_py, rollover,
split payloads, and encoder round trips (hypothesis)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers.paths import REPO
from helpers.paths import testdata_path as data_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microexp.errors import ParameterError
from microexp.events.codecs import make_decoder, make_encoder
from microexp.events.dtype import EVENT_DTYPE, make_events
from microexp.events.libcaer import (
    CMP_SPAN_US,
    ROLLOVER_US,
    LibcaerCmpDecoder,
    LibcaerCmpEncoder,
    LibcaerDecoder,
    LibcaerEncoder,
)

MSG = REPO / "ros2_ws" / "src" / "event_camera_msgs" / "msg" / "EventPacket.msg"


def read_packets(bag_dir: Path, tmp: Path) -> list[dict]:
    """All EventPackets of a bag as dicts (rosbags, no ROS). Works around two quirks of the stored bags:
    a metadata.yaml without storage identifier, and an MCAP schema that rosbags' IDL parser rejects (the
    type is taken from our wire-compatible .msg instead)."""
    import yaml
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg(MSG.read_text(), "event_camera_msgs/msg/EventPacket"))
    meta = yaml.safe_load((bag_dir / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    if not info.get("storage_identifier"):
        dst = tmp / bag_dir.name
        shutil.copytree(bag_dir, dst)
        (dst / "metadata.yaml").chmod(0o644)
        files = info.get("relative_file_paths") or []
        info["storage_identifier"] = "mcap" if any(str(f).endswith(".mcap") for f in files) else "sqlite3"
        (dst / "metadata.yaml").write_text(yaml.safe_dump(meta))
        bag_dir = dst
    out = []
    with Reader(bag_dir) as reader:
        for conn, _, raw in reader.messages():
            m = store.deserialize_cdr(raw, conn.msgtype)
            out.append(
                dict(
                    seq=int(m.seq),
                    time_base=int(m.time_base),
                    encoding=m.encoding,
                    width=int(m.width),
                    height=int(m.height),
                    events=bytes(m.events),
                    stamp=int(m.header.stamp.sec) * 10**9 + int(m.header.stamp.nanosec),
                )
            )
    return out


@pytest.fixture(scope="module")
def rollover_bag(tmp_path_factory):
    return read_packets(data_path("bags", "codecs_libcaer_rollover"), tmp_path_factory.mktemp("bag"))


@pytest.fixture(scope="module")
def cmp_bag(tmp_path_factory):
    return read_packets(data_path("bags", "event_camera_py_test_events_2"), tmp_path_factory.mktemp("bag"))


def decode_all(decoder, packets, time_base=None):
    parts = [decoder.decode(p["events"], p["time_base"] if time_base is None else time_base)[0] for p in packets]
    return parts, np.concatenate(parts)


# ------------------------------------------------------------------------------------------ real bags


def test_rollover_bag_counts_and_geometry(rollover_bag):
    assert len(rollover_bag) == 201
    assert {p["encoding"] for p in rollover_bag} == {"libcaer"}
    assert {(p["width"], p["height"]) for p in rollover_bag} == {(640, 480)}
    dec = make_decoder("libcaer", 640, 480)
    parts, ev = decode_all(dec, rollover_bag)
    assert ev.dtype == EVENT_DTYPE
    assert ev.shape[0] == sum(len(p["events"]) for p in rollover_bag) // 8 == 334_331
    assert int((ev["p"] == 1).sum()) == 181_908  # upstream checksum
    assert dec.invalid_events == 0 and dec.out_of_bounds == 0 and dec.pending_bytes == 0
    assert int(ev["x"].max()) < 640 and int(ev["y"].max()) < 480


def test_rollover_bag_time_is_continuous_across_the_rollover(rollover_bag):
    seqs = [p["seq"] for p in rollover_bag]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no dropped packets
    bases = np.array([p["time_base"] for p in rollover_bag], dtype=np.int64)
    jumps = np.flatnonzero(np.diff(bases))
    assert jumps.size == 1 and int(np.diff(bases)[jumps[0]]) == ROLLOVER_US * 1000  # the driver's rollover
    k = int(jumps[0]) + 1
    raw_ts = np.frombuffer(rollover_bag[k - 1]["events"], "<u4")[1::2]
    assert int(raw_ts[-1]) > ROLLOVER_US - 20_000  # the 31-bit counter was about to roll
    assert int(np.frombuffer(rollover_bag[k]["events"], "<u4")[1]) < 20_000

    parts, ev = decode_all(LibcaerDecoder(640, 480), rollover_bag)
    t = ev["t"]
    assert bool(np.all(np.diff(t) >= 0))
    assert 0 <= int(parts[k]["t"][0]) - int(parts[k - 1]["t"][-1]) < 20_000  # no 35.8 min jump
    assert 1.98e6 < int(t[-1] - t[0]) < 2.0e6
    # the sensor time lies within a few ms before each message's host stamp
    firsts = np.array([int(p["t"][0]) for p in parts])
    stamps_us = np.array([p["stamp"] for p in rollover_bag]) // 1000
    assert np.all(np.abs(stamps_us - firsts) < 50_000)


def test_rollover_inside_the_stream_is_unwrapped(rollover_bag):
    """With one fixed time_base (as from a driver that never updates it), the decoder must count the rollover."""
    _, want = decode_all(LibcaerDecoder(640, 480), rollover_bag)
    dec = LibcaerDecoder(640, 480)
    _, got = decode_all(dec, rollover_bag, time_base=rollover_bag[0]["time_base"])
    assert dec.rollovers == 1
    assert np.array_equal(got, want)


def test_rollover_bag_split_at_arbitrary_bytes(rollover_bag):
    _, want = decode_all(LibcaerDecoder(640, 480), rollover_bag)
    rng = np.random.default_rng(5)
    dec = LibcaerDecoder(640, 480)
    parts = []
    for p in rollover_bag:
        data = p["events"]
        cuts = np.sort(rng.integers(0, len(data), 3))
        pieces = np.split(np.frombuffer(data, np.uint8), cuts)
        for piece in pieces:
            parts.append(dec.decode(piece, p["time_base"])[0])
        assert dec.pending_bytes == 0
    assert np.array_equal(np.concatenate(parts), want)


def test_cmp_bag_counts(cmp_bag):
    assert len(cmp_bag) == 100
    assert {p["encoding"] for p in cmp_bag} == {"libcaer_cmp"}
    assert {(p["width"], p["height"]) for p in cmp_bag} == {(346, 260)}
    dec = make_decoder("libcaer_cmp", 346, 260)
    parts, ev = decode_all(dec, cmp_bag)
    assert int((ev["p"] == 0).sum()) == 360_223 and int((ev["p"] == 1).sum()) == 211_043  # upstream test
    assert dec.unknown_words == 0 and dec.out_of_bounds == 0 and dec.pending_bytes == 0
    assert int(ev["x"].max()) < 346 and int(ev["y"].max()) < 260


def test_cmp_bag_times(cmp_bag):
    seqs = [p["seq"] for p in cmp_bag]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    parts, ev = decode_all(LibcaerCmpDecoder(346, 260), cmp_bag)
    assert bool(np.all(np.diff(ev["t"]) >= 0))
    for p, e in zip(cmp_bag, parts):
        assert int(e["t"][0]) == p["time_base"] // 1000  # the first event is at time_base
        assert int(e["t"][-1]) - int(e["t"][0]) < CMP_SPAN_US
    assert 0.98e6 < int(ev["t"][-1] - ev["t"][0]) < 1.0e6


def test_cmp_bag_split_at_arbitrary_bytes(cmp_bag):
    _, want = decode_all(LibcaerCmpDecoder(346, 260), cmp_bag)
    rng = np.random.default_rng(9)
    dec = LibcaerCmpDecoder(346, 260)
    parts = []
    for p in cmp_bag:
        data = np.frombuffer(p["events"], np.uint8)
        for piece in np.split(data, np.sort(rng.integers(0, len(data), 4))):
            parts.append(dec.decode(piece, p["time_base"])[0])
    assert np.array_equal(np.concatenate(parts), want)


def test_bag_events_reencode(rollover_bag, cmp_bag):
    """Our encoders take the decoded bag events back to payloads that decode to the same events."""
    _, ev = decode_all(LibcaerDecoder(640, 480), rollover_bag)
    enc, dec = LibcaerEncoder(640, 480), LibcaerDecoder(640, 480)
    got = [dec.decode(*enc.encode(chunk))[0] for chunk in np.array_split(ev, 50)]
    assert np.array_equal(np.concatenate(got), ev)

    parts, _ = decode_all(LibcaerCmpDecoder(346, 260), cmp_bag)
    enc, dec = LibcaerCmpEncoder(346, 260), LibcaerCmpDecoder(346, 260)
    ours = theirs = 0
    for p, e in zip(cmp_bag, parts):
        payload, tb = enc.encode(e)
        assert tb == (p["time_base"] // 1000) * 1000
        assert np.array_equal(dec.decode(payload, tb)[0], e)
        ours += len(payload)
        theirs += len(p["events"])
    assert ours <= theirs * 1.05  # about as compact as libcaer_driver's own encoding


# ---------------------------------------------------------------------------------------- hand-made


def _libcaer_word(x, y, p, valid=1):
    return (x << 17) | (y << 2) | (p << 1) | valid


def test_libcaer_layout_by_hand():
    words = np.array(
        [
            _libcaer_word(5, 7, 1),
            100,
            _libcaer_word(639, 479, 0),
            200,
            _libcaer_word(1, 1, 1, valid=0),
            300,
            _libcaer_word(700, 1, 1),
            400,
        ],
        dtype="<u4",
    )
    dec = LibcaerDecoder(640, 480)
    ev, trig = dec.decode(words.tobytes(), time_base=5_000_123)
    assert trig.shape == (0,)
    assert ev.tolist() == [(5, 7, 5000 + 100, 1), (639, 479, 5000 + 200, 0)]
    assert dec.invalid_events == 1 and dec.out_of_bounds == 1


def test_libcaer_rollover_within_one_payload_and_across_payloads():
    ts = [ROLLOVER_US - 2, ROLLOVER_US - 1, 0, 5]
    words = np.array([v for t in ts for v in (_libcaer_word(1, 1, 1), t)], dtype="<u4").tobytes()
    dec = LibcaerDecoder(4, 4)
    ev, _ = dec.decode(words, time_base=0)
    assert ev["t"].tolist() == [ROLLOVER_US - 2, ROLLOVER_US - 1, ROLLOVER_US, ROLLOVER_US + 5]
    dec.reset()
    a, _ = dec.decode(words[:16], 0)
    b, _ = dec.decode(words[16:], 0)  # same time_base: the rollover is counted
    assert b["t"].tolist() == [ROLLOVER_US, ROLLOVER_US + 5]
    c, _ = dec.decode(words[16:], ROLLOVER_US * 1000)  # new time_base: it already includes the rollover
    assert c["t"].tolist() == [ROLLOVER_US, ROLLOVER_US + 5]


def test_libcaer_partial_event_keeps_its_packet_time_base():
    words = np.array([_libcaer_word(1, 2, 1), 10, _libcaer_word(3, 2, 0), 20], dtype="<u4").tobytes()
    dec = LibcaerDecoder(4, 4)
    a, _ = dec.decode(words[:11], 1_000_000)
    assert a["t"].tolist() == [1010] and dec.pending_bytes == 3
    b, _ = dec.decode(words[11:], 2_000_000)  # the cut event began with time_base 1 ms
    assert b.tolist() == [(3, 2, 1020, 0)] and dec.pending_bytes == 0
    e, _ = dec.decode(b"", 0)
    assert e.shape == (0,)


def test_cmp_tokens_by_hand():
    def tok(code, v):
        return (code << 12) | v

    tokens = [
        tok(2, 10),  # ADDR_X 10
        tok(3, (1 << 11) | 4),  # ADDR_Y y=4 ON at t=0
        tok(1, 7),  # TIME_LOW 7
        tok(4, 16),  # VECT_BASE_Y 16 OFF
        tok(5, 0b10000101),  # VECT_8: y = 16, 18, 23
        tok(5, 0b1),  # VECT_8 continues at base 24: y = 24
        tok(0, 2),  # TIME_HIGH 2 -> t = 2*4096 + 7
        tok(2, 400),  # ADDR_X 400: outside a 346 wide sensor
        tok(3, 1),
        tok(7, 0),  # unknown code
        tok(2, 3),
        tok(3, 259 | (1 << 11)),
    ]
    payload = np.array(tokens, dtype="<u2").tobytes()
    dec = LibcaerCmpDecoder(346, 260)
    ev, _ = dec.decode(payload, 3_000_999)
    assert ev.tolist() == [
        (10, 4, 3000, 1),
        (10, 16, 3007, 0),
        (10, 18, 3007, 0),
        (10, 23, 3007, 0),
        (10, 24, 3007, 0),
        (3, 259, 3000 + 2 * 4096 + 7, 1),
    ]
    assert dec.out_of_bounds == 1 and dec.unknown_words == 1


def test_cmp_time_restarts_with_a_new_time_base():
    dec = LibcaerCmpDecoder(10, 10)
    tok = lambda c, v: (c << 12) | v  # noqa: E731
    a = np.array([tok(2, 1), tok(1, 50), tok(3, 1)], "<u2").tobytes()
    b = np.array([tok(2, 2), tok(3, 2)], "<u2").tobytes()
    assert dec.decode(a, 1_000_000)[0]["t"].tolist() == [1050]
    assert dec.decode(b, 1_000_000)[0]["t"].tolist() == [1050]  # same time_base: a continuation
    assert dec.decode(b, 2_000_000)[0]["t"].tolist() == [2000]  # new packet: time restarts


def test_registry_and_protocol():
    for enc_name in ("libcaer", "libcaer_cmp"):
        enc, dec = make_encoder(enc_name, 346, 260), make_decoder(enc_name, 346, 260)
        ev = make_events([1, 2, 3], [4, 5, 6], [10, 10, 20], [1, 0, 1])
        payload, tb = enc.encode(ev)
        assert isinstance(payload, bytes) and isinstance(tb, int)
        assert np.array_equal(dec.decode(payload, tb)[0], ev)
        assert enc.encode(make_events([], [], [], [])) == (b"", 0)
        # rclpy gives uint8[] as array.array; lists and numpy arrays work too
        import array

        dec.reset()  # the same payload again is a new stream (else the time going back reads as a rollover)
        assert np.array_equal(dec.decode(array.array("B", payload), tb)[0], ev)
        dec.reset()
        assert np.array_equal(dec.decode(list(payload), tb)[0], ev)


@pytest.mark.parametrize("cls", [LibcaerEncoder, LibcaerCmpEncoder])
def test_encoder_rejects(cls):
    enc = cls(16, 16)
    with pytest.raises(ParameterError, match="sorted"):
        enc.encode(make_events([1, 1], [1, 1], [20, 10], [0, 0]))
    with pytest.raises(ParameterError, match=">= 0"):
        enc.encode(make_events([1], [1], [-1], [0]))
    with pytest.raises(ParameterError, match="outside"):
        enc.encode(make_events([16], [1], [1], [0]))
    with pytest.raises(ParameterError, match="polarity"):
        enc.encode(make_events([1], [1], [1], [2]))
    enc.encode(make_events([1], [1], [100], [0]))
    with pytest.raises(ParameterError, match="continue"):
        enc.encode(make_events([1], [1], [99], [0]))


def test_encoder_batch_limits():
    with pytest.raises(ParameterError, match="2\\*\\*31"):
        LibcaerEncoder(4, 4).encode(make_events([1, 1], [1, 1], [5, 5 + ROLLOVER_US], [0, 0]))
    LibcaerEncoder(4, 4).encode(make_events([1, 1], [1, 1], [5, 4 + ROLLOVER_US], [0, 0]))
    with pytest.raises(ParameterError, match="2\\*\\*24"):
        LibcaerCmpEncoder(4, 4).encode(make_events([1, 1], [1, 1], [5, 5 + CMP_SPAN_US], [0, 0]))
    with pytest.raises(ParameterError):
        LibcaerDecoder(4, 4).decode(b"", time_base=-1)
    with pytest.raises(ParameterError):
        LibcaerDecoder(0, 4)


# ------------------------------------------------------------------------------ round trips (hypothesis)


@st.composite
def event_batches(draw, width, height, max_gap):
    """Sorted events in a few batches; time steps include zero (same µs), small, and large jumps."""
    n = draw(st.integers(1, 120))
    steps = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(0, 5), st.integers(0, 5000), st.integers(max_gap // 2, max_gap)),
            min_size=n,
            max_size=n,
        )
    )
    t0 = draw(
        st.one_of(
            st.integers(0, 1000),
            st.integers(ROLLOVER_US - 3000, ROLLOVER_US + 10),
            st.integers(5 * ROLLOVER_US - 100, 5 * ROLLOVER_US),
        )
    )
    t = t0 + np.cumsum(np.array(steps, dtype=np.int64))
    x = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    p = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    ev = make_events(x, y, t, p)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return [b for b in np.split(ev, cuts) if b.shape[0]]


def _roundtrip(enc, dec, batches, draw_cuts):
    got = []
    for batch in batches:
        payload, tb = enc.encode(batch)
        cuts = sorted(draw_cuts(len(payload)))
        prev = 0
        for c in cuts + [len(payload)]:
            got.append(dec.decode(payload[prev:c], tb)[0])
            prev = c
    assert dec.pending_bytes == 0
    return np.concatenate(got)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_batches(640, 480, ROLLOVER_US - 1), st.data())
def test_libcaer_roundtrip(batches, data):
    enc, dec = LibcaerEncoder(640, 480), LibcaerDecoder(640, 480)
    cut = lambda n: data.draw(st.lists(st.integers(0, n), max_size=4))  # noqa: E731  (incl. mid-event cuts)
    got = _roundtrip(enc, dec, batches, cut)
    assert np.array_equal(got, np.concatenate(batches))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_batches(346, 260, 3_000_000), st.data())
def test_libcaer_cmp_roundtrip(batches, data):
    enc, dec = LibcaerCmpEncoder(346, 260), LibcaerCmpDecoder(346, 260)
    batches = [b for b in batches if int(b["t"][-1] - b["t"][0]) < CMP_SPAN_US]
    if not batches:
        return
    cut = lambda n: data.draw(st.lists(st.integers(0, n), max_size=4))  # noqa: E731
    got = _roundtrip(enc, dec, batches, cut)
    assert np.array_equal(got, np.concatenate(batches))


def test_cmp_encoder_merges_rows_into_vectors():
    ev = make_events([7] * 8, [8, 9, 10, 11, 12, 13, 14, 15], [100] * 8, [1] * 8)
    payload, tb = LibcaerCmpEncoder(32, 32).encode(ev)
    assert len(payload) == 2 * 3  # ADDR_X, VECT_BASE_Y, VECT_8
    assert np.array_equal(LibcaerCmpDecoder(32, 32).decode(payload, tb)[0], ev)
    dup = make_events([7, 7, 7], [9, 9, 8], [100] * 3, [1] * 3)  # duplicate and decreasing y keep their order
    payload, tb = LibcaerCmpEncoder(32, 32).encode(dup)
    assert np.array_equal(LibcaerCmpDecoder(32, 32).decode(payload, tb)[0], dup)


@pytest.mark.slow
def test_codec_speed_smoke():
    """Not a benchmark: 1 M events must encode and decode well within a second per codec."""
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    ev = make_events(
        rng.integers(0, 346, n), rng.integers(0, 260, n), np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 2, n)
    )
    for enc, dec in (
        (LibcaerEncoder(346, 260), LibcaerDecoder(346, 260)),
        (LibcaerCmpEncoder(346, 260), LibcaerCmpDecoder(346, 260)),
    ):
        dec.decode(*enc.encode(ev[:10]))
        enc.reset()
        dec.reset()
        t0 = time.perf_counter()
        payload, tb = enc.encode(ev)
        out, _ = dec.decode(payload, tb)
        assert time.perf_counter() - t0 < 1.5
        assert np.array_equal(out, ev)
