"""Movement spotting (infer/spotting.py) on hand-made activity sequences, and the spotting pipeline: rest windows
name no AU, a spotted movement gets one verdict over the training window around its peak."""

from __future__ import annotations

import numpy as np
import pytest

from microexp.errors import ParameterError
from microexp.events.activity import box_count, movement_peak
from microexp.infer.spotting import MovementSpotter, SpotterConfig

SLICE = 33_000
CROP = np.zeros((2, 8, 8), dtype=np.float32)


def feed(spotter: MovementSpotter, activity, start: int = 0, end: bool = True) -> list:
    """Push one window per activity value (the crop of window i holds i, to tell windows apart)."""
    out = []
    for k, a in enumerate(activity):
        i = start + k
        crop = np.full_like(CROP, float(i))
        out += spotter.push(i, i * SLICE, (i + 1) * SLICE, int(a) + 40, int(a), crop)
    if end:
        out += spotter.end()
    return out


def movement(onset: int, values, length: int = 120) -> list:
    a = [0] * length
    a[onset : onset + len(values)] = values
    return a


def test_quiet_stream_spots_nothing_and_says_rest():
    sp = MovementSpotter()
    assert feed(sp, [0, 1, 0, 2, 1] * 30) == []
    assert not sp.moving and sp.spotted == 0


def test_one_movement_with_an_apex_hold_is_one_interval_and_one_verdict_window():
    # onset burst, 5 still windows (apex), offset burst
    values = [30, 120, 60, 0, 0, 0, 0, 0, 40, 90, 20]
    got = feed(MovementSpotter(), movement(50, values))
    assert len(got) == 1
    s = got[0]
    assert (s.onset, s.offset) == (50, 60)
    # the reported interval adds one window (extend) at each end
    assert s.onset_us == 49 * SLICE and s.offset_us == 62 * SLICE
    # the verdict runs over 16 windows centred on the peak, from the buffer, in order
    assert s.last - s.first == 16 and s.first == s.peak - 8
    assert s.crops.shape == (16, 2, 8, 8) and [c[0, 0, 0] for c in s.crops] == list(range(s.first, s.last))
    assert s.decided_us >= (s.last - 1) * SLICE


def test_apex_longer_than_hold_splits_the_movement():
    values = [30, 120, 60] + [0] * 12 + [40, 90, 20]
    got = feed(MovementSpotter(SpotterConfig(hold=8)), movement(50, values))
    assert [(s.onset, s.offset) for s in got] == [(50, 52), (65, 67)]


def test_isolated_sway_bursts_are_dropped_and_raise_the_rest_ceiling():
    sway = [0] * 200
    for k in range(5, 200, 10):
        sway[k] = 18  # a burst of head sway every 10 windows: each alone is below min_events
    sp = MovementSpotter()
    assert feed(sp, sway, end=False) == []
    assert sp.dropped >= 1
    # the dropped bursts count as rest: the bar is above them now, and later bursts open no candidate at all
    assert sp.level() > 18 and not sp.moving
    # a real movement still gets through
    got = feed(sp, [0, 60, 150, 80, 0, 0, 0, 30, 70, 10] + [0] * 30, start=200)
    assert len(got) == 1 and got[0].onset == 201


def test_trailing_activity_after_a_large_movement_is_not_a_second_movement():
    big = [2000, 12000, 9000, 1000, 0, 4000, 11000, 4000]
    tail = [0] * 12 + [20, 30, 25, 20, 30, 20, 25] + [0] * 30
    got = feed(MovementSpotter(), movement(40, big + tail, length=140))
    assert len(got) == 1
    # without the refractory period the tail is a movement of its own
    assert len(feed(MovementSpotter(SpotterConfig(refractory=0)), movement(40, big + tail, length=140))) == 2


def test_a_burst_merged_at_the_start_is_trimmed_from_the_interval():
    values = [6] + [0] * 5 + [200, 400, 300, 100]  # a small burst 6 windows before the movement
    got = feed(MovementSpotter(SpotterConfig(threshold=5)), movement(50, values))
    assert len(got) == 1 and got[0].onset == 56  # trimmed to where the events are


def test_end_of_stream_judges_the_open_movement_with_the_windows_there_are():
    sp = MovementSpotter()
    got = feed(sp, [0] * 30 + [50, 200, 150], end=False)
    assert got == [] and sp.moving
    got = sp.end("gap")
    assert len(got) == 1 and got[0].forced == "gap"
    s = got[0]
    assert s.crops.shape[0] == 16 and s.last - 1 <= 32  # clamped into the buffer, as training clamps


def test_a_gap_in_window_indices_closes_the_open_movement():
    sp = MovementSpotter()
    feed(sp, [0] * 20 + [100, 200], end=False)
    got = sp.push(40, 40 * SLICE, 41 * SLICE, 40, 0, CROP)  # window 22..39 never came
    assert len(got) == 1 and got[0].forced == "gap" and not sp.moving


def test_movement_crops_of_a_confirmed_movement_start_at_its_onset():
    sp = MovementSpotter()
    feed(sp, [0] * 20 + [30, 40], end=False)
    assert sp.moving
    assert [c[0, 0, 0] for c in sp.movement_crops()] == [20.0, 21.0]


def test_bad_parameters_name_themselves():
    for kw, name in (({"hold": 0}, "hold"), ({"quantile": 1.0}, "quantile"), ({"extend": -1}, "extend")):
        with pytest.raises(ParameterError, match=name):
            SpotterConfig(**kw)


def test_movement_peak_and_box_count():
    a = np.zeros(60)
    a[25:30] = [5, 20, 40, 20, 5]
    assert movement_peak(a) == 27 and movement_peak([]) == 0
    from microexp.events.dtype import make_events

    ev = make_events([1, 5, 5, 9], [1, 5, 6, 9], [0, 1, 2, 3], [0, 1, 1, 2])
    assert box_count(ev, (4, 4, 8, 8)) == 2 and box_count(ev, None) == 0


def test_pipeline_in_spotting_mode_names_no_au_at_rest_and_judges_each_movement():
    """The spotting pipeline on a stream: a quiet face (noise only) then a moving blob. Rest windows have zero
    probabilities and state "rest"; the movement gets exactly one verdict, over the training window."""
    from helpers.infer import random_snn

    from microexp.events.dtype import concat_events, make_events
    from microexp.infer.pipeline import StreamingAUPipeline

    rng = np.random.default_rng(0)
    w, h = 64, 64
    parts = []
    for k in range(90):  # 3 s: noise everywhere, a moving edge in windows 40..50
        t0 = k * SLICE
        n = 30
        parts.append(
            make_events(rng.integers(0, w, n), rng.integers(0, h, n), np.sort(rng.integers(t0, t0 + SLICE, n)), 1)
        )
        if 40 <= k < 50:
            ys = np.arange(10, 54)
            x = np.full_like(ys, 10 + 4 * (k - 40))
            for j in range(4):
                parts.append(make_events(x + j, ys, np.full_like(ys, t0 + 1000 + 200 * j), k % 2))
    events = concat_events(parts)
    events = events[np.argsort(events["t"], kind="stable")]
    p = StreamingAUPipeline(random_snn(), w, h, spotting=SpotterConfig(), activity_filter_us=5000)
    results = p.push(events) + p.flush()
    states = [r.state for r in results]
    # the window grid starts at the first event: window k covers the edge's step k + 1
    assert states[:39].count("movement") == 0
    assert any(s == "movement" for s in states[39:49])
    rest = [r for r in results if r.state == "rest"]
    assert rest and all(float(r.probabilities.sum()) == 0.0 for r in rest)
    spotted = [s for r in results for s in r.spotted]
    assert len(spotted) == 1
    verdict = p.judge(spotted[0])
    assert verdict.windows == 16 and abs(float(verdict.probabilities.sum()) - 1.0) < 1e-4
    assert 37 * SLICE <= verdict.onset_us < verdict.apex_us < verdict.offset_us <= 52 * SLICE
    assert p.counters()["verdicts"] == 1 and p.counters()["rest_windows"] == len(rest)
