"""Eq. (1) event frames: hand-made cases, slice edges, a naive reference under hypothesis, the streaming binner."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microexp.errors import ParameterError
from microexp.events.dtype import EVENT_DTYPE, make_events
from microexp.events.frames import EventBinner, EventSlicer, event_frames


def reference(events, width, height, slice_us, t_start, n_slices, dtype=np.int64):
    """Eq. (1) spelled out event by event."""
    out = np.zeros((n_slices, 2, height, width), dtype=np.int64)
    for e in events:
        k = (int(e["t"]) - t_start) // slice_us
        if 0 <= k < n_slices and e["x"] < width and e["y"] < height and e["p"] <= 1:
            out[k, e["p"], e["y"], e["x"]] += 1
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is not None:
        out = np.minimum(out, info.max)
    return out.astype(dtype)


def test_channels_are_polarities_and_counts_add_up():
    ev = make_events([0, 0, 1, 2, 2, 2], [0, 0, 1, 2, 2, 0], [5, 6, 7, 8, 9, 10], [1, 1, 0, 1, 0, 0])
    f = event_frames(ev, width=3, height=3, slice_us=100)
    assert f.shape == (1, 2, 3, 3) and f.dtype == np.uint16
    assert f[0, 1, 0, 0] == 2  # two ON events at (x=0, y=0)
    assert f[0, 0, 1, 1] == 1  # OFF at (1, 1)
    assert f[0, 1, 2, 2] == 1 and f[0, 0, 2, 2] == 1
    assert f[0, 0, 0, 2] == 1  # x=2, y=0: row 0, column 2
    assert int(f.sum()) == 6


def test_slice_edges_are_left_closed():
    s = 1000
    ev = make_events([0] * 6, [0] * 6, [100, 100 + s - 1, 100 + s, 100 + 2 * s - 1, 100 + 2 * s, 100 + 3 * s], [1] * 6)
    f = event_frames(ev, 1, 1, slice_us=s)
    assert f.shape[0] == 4
    assert f[:, 1, 0, 0].tolist() == [2, 2, 1, 1]
    # explicit grid: t_start just after the first event drops it; n_slices cuts the tail
    f2 = event_frames(ev, 1, 1, slice_us=s, t_start=101, n_slices=2)
    assert f2[:, 1, 0, 0].tolist() == [2, 2]  # [101, 1101): 1099, 1100; [1101, 2101): 2099, 2100
    f3 = event_frames(ev, 1, 1, slice_us=s, t_start=100, n_slices=3)
    assert f3[:, 1, 0, 0].tolist() == [2, 2, 1]  # 3100 is at the end of slice 2: excluded


def test_t_start_before_first_event_and_empty_slices():
    ev = make_events([1, 1], [0, 0], [5000, 9000], [0, 1])
    f = event_frames(ev, 2, 1, slice_us=1000, t_start=0)
    assert f.shape == (10, 2, 1, 2)
    assert int(f[5, 0, 0, 1]) == 1 and int(f[9, 1, 0, 1]) == 1 and int(f.sum()) == 2
    f = event_frames(ev, 2, 1, slice_us=1000, t_start=0, n_slices=3)
    assert f.shape == (3, 2, 1, 2) and int(f.sum()) == 0


def test_empty_input():
    ev = make_events([], [], [], [])
    assert event_frames(ev, 4, 3).shape == (0, 2, 3, 4)
    assert event_frames(ev, 4, 3, n_slices=2).shape == (2, 2, 3, 4)
    assert not event_frames(ev, 4, 3, t_start=0, n_slices=2).any()


def test_events_outside_the_sensor_or_with_bad_polarity_are_not_counted():
    ev = make_events([0, 4, 0, 1], [0, 0, 3, 1], [0, 1, 2, 3], [1, 1, 0, 7])
    f = event_frames(ev, 4, 3)
    assert int(f.sum()) == 1 and f[0, 1, 0, 0] == 1


def test_saturation_instead_of_wraparound():
    n = 300
    ev = make_events(np.zeros(n), np.zeros(n), np.arange(n), np.ones(n))
    assert int(event_frames(ev, 1, 1, slice_us=10_000, dtype=np.uint8)[0, 1, 0, 0]) == 255
    assert int(event_frames(ev, 1, 1, slice_us=10_000, dtype=np.int32)[0, 1, 0, 0]) == 300
    assert float(event_frames(ev, 1, 1, slice_us=10_000, dtype=np.float32)[0, 1, 0, 0]) == 300.0


def test_unsorted_input_gives_the_same_frames():
    rng = np.random.default_rng(3)
    n = 5000
    ev = make_events(
        rng.integers(0, 20, n), rng.integers(0, 10, n), np.sort(rng.integers(0, 100_000, n)), rng.integers(0, 2, n)
    )
    want = event_frames(ev, 20, 10, slice_us=3000)
    shuffled = ev[rng.permutation(n)]
    # t_start is the first event's t by definition: fix it to compare
    got = event_frames(shuffled, 20, 10, slice_us=3000, t_start=int(ev["t"][0]))
    assert np.array_equal(got, want)


def test_non_contiguous_and_foreign_layout_input():
    ev = make_events([1, 2, 3, 1], [0, 1, 2, 0], [0, 10, 20, 30], [1, 0, 1, 1])
    assert np.array_equal(event_frames(ev[::2], 4, 3), reference(ev[::2], 4, 3, 33_000, 0, 1, np.uint16))
    other = np.zeros(4, dtype=[("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "i1")])
    for k in ("x", "y", "t", "p"):
        other[k] = ev[k]
    assert np.array_equal(event_frames(other, 4, 3), event_frames(ev, 4, 3))
    # values no uint16 holds, and polarities other than 0/1, are not counted (not wrapped into range)
    odd = np.zeros(4, dtype=[("x", "<i4"), ("y", "<i4"), ("t", "<f8"), ("p", "i1")])
    odd["x"], odd["y"], odd["t"], odd["p"] = [-1, 65536 + 1, 1, 1], [0, 0, 1 << 16, 0], [0, 1, 2, 3], [1, 1, 1, -1]
    assert int(event_frames(odd, 4, 3).sum()) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(width=0, height=3),
        dict(width=3, height=-1),
        dict(width=3, height=3, slice_us=0),
        dict(width=3, height=3, n_slices=-1),
        dict(width=3, height=3, dtype=np.bool_),
        dict(width=2.5, height=3),
    ],
)
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        event_frames(make_events([0], [0], [0], [0]), **kwargs)


def test_not_an_event_array():
    with pytest.raises(ParameterError):
        event_frames(np.zeros(4), 4, 3)
    with pytest.raises(ParameterError):
        event_frames(np.zeros(4, dtype=[("x", "u2"), ("t", "i8")]), 4, 3)


events_strategy = st.integers(0, 400).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 9), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.lists(st.integers(-50, 5000), min_size=n, max_size=n),
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events_strategy,
    st.integers(1, 700),
    st.one_of(st.none(), st.integers(-100, 3000)),
    st.one_of(st.none(), st.integers(0, 12)),
    st.booleans(),
    st.sampled_from([np.uint16, np.uint8, np.int64]),
)
def test_matches_naive_reference(cols, slice_us, t_start, n_slices, sort, dtype):
    x, y, t, p = cols
    ev = make_events(x, y, t, p)
    if sort:
        ev = ev[np.argsort(ev["t"], kind="stable")]
    got = event_frames(ev, 8, 6, slice_us=slice_us, t_start=t_start, n_slices=n_slices, dtype=dtype)
    t0 = t_start if t_start is not None else (int(ev["t"][0]) if len(ev) else None)
    if n_slices is None:
        n_slices = 0 if t0 is None or not len(ev) else max(0, (int(ev["t"].max()) - t0) // slice_us + 1)
    want = reference(ev, 8, 6, slice_us, t0 if t0 is not None else 0, n_slices, dtype)
    assert got.dtype == np.dtype(dtype)
    assert np.array_equal(got, want)


# ------------------------------------------------------------------------------------------- EventBinner


def _stream_frames(binner, batches):
    out = []
    for b in batches:
        out.extend(binner.push(b))
    out.extend(binner.flush())
    return out


def test_binner_doc_example_and_window_times():
    b = EventBinner(width=4, height=3, slice_us=100)
    assert b.push(make_events([1], [2], [1000], [1])) == []
    got = b.push(make_events([0], [0], [1250], [0]))
    assert [(t0, t1) for t0, t1, _ in got] == [(1000, 1100), (1100, 1200)]
    assert got[0][2][1, 2, 1] == 1 and int(got[1][2].sum()) == 0
    last = b.flush()
    assert [(t0, t1, int(f[0, 0, 0])) for t0, t1, f in last] == [(1200, 1300, 1)]
    assert b.flush() == []


def test_binner_equals_event_frames_for_any_batching():
    rng = np.random.default_rng(7)
    n = 20_000
    ev = make_events(
        rng.integers(0, 30, n), rng.integers(0, 20, n), np.sort(rng.integers(0, 2_000_000, n)), rng.integers(0, 2, n)
    )
    want = event_frames(ev, 30, 20, slice_us=33_000)
    for cuts in (np.array([], dtype=int), np.sort(rng.integers(0, n, 50)), np.arange(0, n, 1)[:: n // 7]):
        b = EventBinner(30, 20, slice_us=33_000)
        windows = _stream_frames(b, np.split(ev, cuts))
        frames = np.stack([f for _, _, f in windows])
        assert np.array_equal(frames, want)
        starts = [t0 for t0, _, _ in windows]
        assert starts == [int(ev["t"][0]) + k * 33_000 for k in range(len(want))]


def test_binner_long_gap_uses_shared_zero_frames():
    b = EventBinner(3, 2, slice_us=10)
    first = make_events([0], [0], [0], [1])
    later = make_events([1, 2], [1, 1], [10 * 1000 + 5, 10 * 1000 + 6], [0, 1])
    windows = _stream_frames(b, [first, later])
    assert len(windows) == 1001
    assert windows[0][2][1, 0, 0] == 1
    zero_frames = [f for _, _, f in windows[1:-1]]
    assert all(not f.any() for f in zero_frames)
    assert len({id(f) for f in zero_frames if not f.flags.writeable}) <= 1
    assert windows[-1][0] == 10_000 and int(windows[-1][2].sum()) == 2
    ref = event_frames(np.concatenate([first, later]), 3, 2, slice_us=10)
    assert np.array_equal(np.stack([f for _, _, f in windows]), ref)


def test_binner_counts_late_events_and_respects_t_start():
    b = EventBinner(2, 2, slice_us=100, t_start=1000)
    assert b.push(make_events([0, 1], [0, 0], [900, 1010], [1, 1])) == []
    assert b.late == 1
    b.push(make_events([0], [0], [1250], [1]))
    assert b.window_start == 1200
    b.push(make_events([1], [1], [1150], [0]))  # older than the open window [1200, 1300)
    assert b.late == 2
    b.reset()
    assert b.late == 0 and b.window_start == 1000


def test_binner_same_saturation_as_event_frames():
    n = 400
    ev = make_events(np.zeros(n), np.zeros(n), np.arange(n), np.zeros(n))
    b = EventBinner(1, 1, slice_us=1000, dtype=np.uint8)
    windows = _stream_frames(b, np.array_split(ev, 5))
    assert int(windows[0][2][0, 0, 0]) == 255
    assert np.array_equal(windows[0][2], event_frames(ev, 1, 1, slice_us=1000, dtype=np.uint8)[0])


@settings(max_examples=60, deadline=None)
@given(events_strategy, st.integers(1, 300), st.lists(st.integers(0, 400), max_size=6))
def test_binner_matches_event_frames_hypothesis(cols, slice_us, cuts):
    x, y, t, p = cols
    ev = make_events(x, y, t, p)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    b = EventBinner(8, 6, slice_us=slice_us)
    b.MAX_BLOCK = 3  # exercise the block-by-block path too
    windows = _stream_frames(b, np.split(ev, sorted(c for c in cuts if c <= len(ev))))
    want = event_frames(ev, 8, 6, slice_us=slice_us)
    got = np.stack([f for _, _, f in windows]) if windows else np.zeros((0, 2, 6, 8), np.uint16)
    assert np.array_equal(got, want)


@pytest.mark.slow
def test_speed_smoke():
    """Not a benchmark (see `microexp bench binning`): 2 M events must bin in well under a second."""
    import time

    rng = np.random.default_rng(0)
    n = 2_000_000
    ev = np.empty(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 2_000_000, n))
    ev["x"] = rng.integers(0, 346, n)
    ev["y"] = rng.integers(0, 260, n)
    ev["p"] = rng.integers(0, 2, n)
    event_frames(ev[:10], 346, 260)
    t0 = time.perf_counter()
    f = event_frames(ev, 346, 260)
    assert time.perf_counter() - t0 < 1.0
    assert int(f.sum(dtype=np.int64)) == n


# ------------------------------------------------------------------------------------ noise filter
def test_background_activity_filter_keeps_supported_events_only():
    from microexp.events.filters import BackgroundActivityFilter

    f = BackgroundActivityFilter(10, 8, dt_us=100)
    ev = make_events(
        [5, 6, 5, 0, 9, 2, 2], [5, 5, 5, 0, 7, 3, 3], [1000, 1050, 1300, 1301, 1302, 1400, 1450], [1, 0, 1, 1, 0, 1, 1]
    )
    kept = f(ev)
    # (6,5) has its neighbour (5,5) 50 µs before; (5,5) at 1300 is 250 µs after (6,5): too late; the same
    # pixel twice (2,3) is no support; isolated events go
    assert kept["t"].tolist() == [1050] and (f.seen, f.kept) == (7, 1)
    # corner and edge pixels: the border never supports
    g = BackgroundActivityFilter(10, 8, dt_us=100)
    assert g(make_events([0, 1, 9, 9], [0, 1, 7, 6], [10, 20, 30, 40], [1, 1, 1, 1]))["t"].tolist() == [20, 40]
    with pytest.raises(ParameterError, match="dt_us"):
        BackgroundActivityFilter(10, 8, 0)
    with pytest.raises(ParameterError, match="outside"):
        g(make_events([10], [0], [50], [1]))


def test_background_activity_filter_streams_like_one_call():
    from microexp.events.filters import BackgroundActivityFilter

    rng = np.random.default_rng(0)
    n = 20000
    t = np.sort(rng.integers(0, 2_000_000, n))
    ev = make_events(rng.integers(0, 40, n), rng.integers(0, 30, n), t, rng.integers(0, 2, n))
    whole = BackgroundActivityFilter(40, 30, 3000)(ev)
    f = BackgroundActivityFilter(40, 30, 3000)
    cuts = np.sort(rng.integers(0, n, 30))
    parts = [f(p) for p in np.split(ev, cuts)]
    assert 0 < len(whole) < n and np.array_equal(np.concatenate(parts), whole)
    f.reset()
    assert np.array_equal(f(ev), whole)


def test_binner_advance_closes_windows_without_events():
    b = EventBinner(4, 3, slice_us=100)
    assert b.advance(1000) == [] and b.window_start == 1000
    assert b.push(make_events([1], [1], [1010], [1])) == []
    done = b.advance(1250)  # as an event at 1250 would: windows [1000,1100) and [1100,1200) close
    assert [(t0, t1, int(f.sum())) for t0, t1, f in done] == [(1000, 1100, 1), (1100, 1200, 0)]
    assert b.advance(1299) == [] and b.window_start == 1200


# ------------------------------------------------------------------------------------------- EventSlicer


def _slicer_and_binner(pushes, slice_us, t_start=None, w=8, h=6):
    """Run the same push / advance / flush calls through both; return their windows."""
    s, b = EventSlicer(slice_us, t_start=t_start), EventBinner(w, h, slice_us, t_start=t_start)
    got_s, got_b = [], []
    for kind, arg in pushes:
        got_s.extend(getattr(s, kind)(arg))
        got_b.extend(getattr(b, kind)(arg))
    got_s.extend(s.flush())
    got_b.extend(b.flush())
    return s, b, got_s, got_b


@settings(max_examples=120, deadline=None)
@given(
    events_strategy,
    st.integers(1, 300),
    st.lists(st.integers(0, 400), max_size=6),
    st.lists(st.integers(-100, 6000), max_size=3),
    st.one_of(st.none(), st.integers(-100, 500)),
)
def test_slicer_cuts_the_binners_windows(cols, slice_us, cuts, advances, t_start):
    """Same windows, same grid, same late count, and Eq. (1) of each window's events is the binner's frame,
    for any batching, interleaved advance() calls and t_start (events outside the sensor included)."""
    x, y, t, p = cols
    ev = make_events(x, y, t, p)
    ev = ev[np.argsort(ev["t"], kind="stable")]
    parts = np.split(ev, sorted(c for c in cuts if c <= len(ev)))
    pushes = [("push", part) for part in parts]
    for i, a in enumerate(advances):  # an advance between batches, at a time not after the next batch
        k = min(i + 1, len(pushes))
        nxt = pushes[k][1] if k < len(pushes) and len(pushes[k][1]) else None
        pushes.insert(k, ("advance", a if nxt is None else min(a, int(nxt["t"][0]))))
    s, b, got_s, got_b = _slicer_and_binner(pushes, slice_us, t_start)
    assert [(t0, t1) for t0, t1, _ in got_s] == [(t0, t1) for t0, t1, _ in got_b]
    assert s.late == b.late and s.window_start == b.window_start
    for (t0, _, e), (_, _, f) in zip(got_s, got_b):
        assert e.dtype == EVENT_DTYPE and np.all((e["t"] >= t0) & (e["t"] < t0 + slice_us))
        assert np.array_equal(event_frames(e, 8, 6, slice_us, t_start=t0, n_slices=1)[0], f)


def test_slicer_doc_example_gaps_late_events_and_unsorted_batches():
    s = EventSlicer(slice_us=100)
    assert s.push(make_events([1], [2], [1000], [1])) == []
    got = s.push(make_events([0, 3], [0, 1], [1050, 1250], [0, 1]))
    assert [(t0, t1, len(e)) for t0, t1, e in got] == [(1000, 1100, 2), (1100, 1200, 0)]
    assert s.push(make_events([0], [0], [1150], [1])) == [] and s.late == 1  # older than [1200, 1300)
    # an unsorted batch is cut as if sorted: every event lands in its own window
    got = s.push(make_events([1, 2, 3, 4], [0, 0, 0, 0], [1420, 1210, 1390, 1305], [1, 1, 0, 0]))
    assert [(t0, sorted(e["t"].tolist())) for t0, _, e in got] == [(1200, [1210, 1250]), (1300, [1305, 1390])]
    assert [(t0, e["t"].tolist()) for t0, _, e in s.flush()] == [(1400, [1420])]
    assert s.flush() == []
    s.reset()
    assert s.window_start is None and s.late == 0
    assert s.advance(5000) == [] and s.window_start == 5000


def test_fast_event_copies_equal_numpys():
    """concat_events / copy_events / take_events (raw-record copies) give numpy's results for EVENT_DTYPE
    arrays, strided views included, and fall back to numpy for other layouts."""
    from microexp.events.dtype import concat_events, copy_events, take_events

    rng = np.random.default_rng(2)
    ev = make_events(
        rng.integers(0, 60000, 500),
        rng.integers(0, 60000, 500),
        rng.integers(-(2**40), 2**40, 500),
        rng.integers(0, 2, 500),
    )
    parts = [ev[:100], ev[100:101], ev[101:0], ev[101::3], ev[::-7]]
    assert np.array_equal(concat_events(parts), np.concatenate(parts))
    assert concat_events(parts).dtype == EVENT_DTYPE
    copied = copy_events(ev[::2])
    assert np.array_equal(copied, ev[::2]) and not np.shares_memory(copied, ev)
    mask, order = ev["t"] > 0, np.argsort(ev["t"], kind="stable")
    assert np.array_equal(take_events(ev, mask), ev[mask]) and np.array_equal(take_events(ev, order), ev[order])
    other = np.zeros(4, dtype=[("x", "<u2"), ("t", "<i8")])
    assert np.array_equal(concat_events([other, other]), np.concatenate([other, other]))
    assert np.array_equal(take_events(other, [1, 0]), other[[1, 0]])
