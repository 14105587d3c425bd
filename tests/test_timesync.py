"""Clock synchronisation core: the envelope estimator under drift, jitter and outliers; frame pairing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microexp.errors import ParameterError
from microexp.synth.clock import Link, SensorClock, Transport
from microexp.timesync import ApproximatePairer, ClockEstimator, envelope_line, lower_hull, pair_streams

ROS_EPOCH_S = 1_790_000_000.0


def _session(
    drift_ppm: float, seconds: float = 600.0, rate_hz: float = 100.0, outlier_frac: float = 0.01, seed: int = 0
):
    """Sensor stamps, arrivals (ns) and the true ROS time (ns) of each stamp for a simulated session:
    latency 0.2 ms + uniform one-sided jitter up to 1.8 ms; outliers half late (5-50 ms), half early
    (a corrupted sensor stamp that reads 2-20 ms late, i.e. the message looks early)."""
    rng = np.random.default_rng(seed)
    clock = SensorClock(drift_ppm=drift_ppm, offset_us=5000.0, t0_s=ROS_EPOCH_S)
    n = int(seconds * rate_hz)
    host = ROS_EPOCH_S + np.arange(n) / rate_hz + rng.uniform(0, 0.2 / rate_hz, n)
    sensor = clock.sensor_us(host)
    delay = 0.0002 + rng.uniform(0.0, 0.0018, n)
    kind = rng.random(n)
    late = kind < outlier_frac / 2
    early = (kind >= outlier_frac / 2) & (kind < outlier_frac)
    delay[late] += rng.uniform(0.005, 0.050, late.sum())
    stamps = sensor.copy()
    stamps[early] += rng.uniform(2000, 20000, early.sum()).astype(np.int64)
    arrival_ns = np.round((host + delay) * 1e9).astype(np.int64)
    truth_ns = np.round(clock.host_s(stamps) * 1e9).astype(np.int64)  # truth for the stamp as sent
    return stamps, arrival_ns, truth_ns, early | late, early


@pytest.mark.parametrize("drift_ppm", [100.0, -100.0])
def test_estimate_within_half_a_millisecond_over_ten_minutes(drift_ppm):
    stamps, arrival, truth, outlier, early = _session(drift_ppm)
    est = ClockEstimator()
    errors = []
    for k in range(len(stamps)):
        est.update(int(stamps[k]), int(arrival[k]))
        if est.locked and not outlier[k]:
            errors.append(est.to_ros_ns(int(stamps[k])) - truth[k])
    errors = np.abs(np.asarray(errors))
    assert len(errors) > 0.97 * len(stamps)  # locked within the first seconds
    assert errors.max() < 500_000, f"max error {errors.max() / 1e6:.3f} ms"
    assert abs(est.drift_ppm - drift_ppm) < 5.0
    assert est.outliers >= early.sum()  # every impossible-early sample was refused
    assert est.outliers <= 1.5 * outlier.sum()
    assert 100.0 < est.jitter_us < 2000.0
    assert abs(est.offset_ms - (est.to_ros_ns(int(stamps[-1])) - int(stamps[-1]) * 1000) / 1e6) < 1e-3


def test_vectorised_mapping_matches_scalar():
    stamps, arrival, _, _, _ = _session(30.0, seconds=20.0)
    est = ClockEstimator()
    for s, a in zip(stamps, arrival):
        est.update(int(s), int(a))
    many = est.to_ros_ns(stamps[:50])
    assert many.dtype == np.int64 and [int(v) for v in many] == [est.to_ros_ns(int(s)) for s in stamps[:50]]


def test_not_locked_at_first_and_error_before_any_sample():
    est = ClockEstimator()
    with pytest.raises(ParameterError):
        est.to_ros_ns(0)
    assert not est.locked and np.isnan(est.drift_ppm)
    est.update(1000, 2_000_000_000)
    assert not est.locked
    assert est.to_ros_ns(1000) == 2_000_000_000  # provisional: slope 1 through the sample


def test_relocks_after_a_sensor_clock_jump():
    rng = np.random.default_rng(3)
    est = ClockEstimator(relock_after=20)
    for k in range(3000):  # 30 s, then the sensor counter resets
        host = 10.0 + k / 100
        sensor = (k if k < 1500 else k - 1500) * 10_000 + (0 if k < 1500 else 7)
        est.update(sensor, int((host + 0.0003 + rng.uniform(0, 0.001)) * 1e9))
    assert est.relocks == 1 and est.locked
    host = 10.0 + 2999 / 100
    assert abs(est.to_ros_ns(1499 * 10_000 + 7) - host * 1e9) < 1_500_000


def test_with_the_synthetic_rig_clock_and_link():
    clock = SensorClock(drift_ppm=-63.0, offset_us=12_345_678.0, t0_s=0.0)
    link = Link(Transport(latency_s=0.001, jitter_s=0.0005, outlier_prob=0.01), seed=(1, 2))
    est = ClockEstimator(latency_us=1000.0)  # the known fixed latency is subtracted
    worst = 0
    for k in range(6000):  # one minute at 100 Hz
        t = k / 100.0
        s = clock.sensor_us(t)
        est.update(s, int(round(link.arrival_s(t) * 1e9)))
        if k > 500:
            worst = max(worst, abs(est.to_ros_ns(s) - clock.host_s(s) * 1e9))
    assert worst < 500_000 and abs(est.drift_ppm + 63.0) < 10


def test_envelope_line_lies_under_all_points_and_touches_the_hull():
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(0, 100, 200))
    ys = 0.5 * xs + 3 + rng.exponential(1.0, 200)
    slope, icpt = envelope_line(list(xs), list(ys))
    resid = ys - (slope * xs + icpt)
    assert resid.min() > -1e-9 and np.sum(resid < 1e-9) >= 2
    assert abs(slope - 0.5) < 0.05
    hull = lower_hull(list(xs), list(ys))
    assert hull[0] == 0 and hull[-1] == len(xs) - 1
    with pytest.raises(ParameterError):
        envelope_line([1.0], [2.0])


# ------------------------------------------------------------------------------------------------ pairing


def test_pairs_davis_aps_with_webcam_frames():
    rng = np.random.default_rng(1)
    aps = np.arange(0, 10_000_000_000, 25_000_000) + 3_000_000  # 40 fps, 10 s
    cam = np.arange(0, 10_000_000_000, 16_666_667)  # 60 fps
    arr_aps = aps + 3_000_000 + rng.exponential(1e6, len(aps))
    arr_cam = cam + 30_000_000 + rng.exponential(4e6, len(cam))
    slop = 9_000_000
    r = pair_streams(aps, cam, slop, queue_size=10, arrivals_a=arr_aps, arrivals_b=arr_cam)
    assert len(r.pairs) >= len(aps) - 1
    assert len(np.unique(r.pairs[:, 0])) == len(r.pairs) and len(np.unique(r.pairs[:, 1])) == len(r.pairs)
    assert np.all(np.abs(r.deltas_ns) <= slop)
    assert r.median_abs_delta_ns <= 1e9 / 120
    assert r.dropped[0] == 0  # no APS frame waited out of the queue


def test_queue_drops_oldest_and_counts():
    p = ApproximatePairer(slop_ns=10, queue_size=2)
    for s in (0, 100, 200):
        assert p.add(0, s) == []
    assert p.dropped == [1, 0]
    assert p.add(1, 5) == []  # the stamp-0 message was dropped
    (pair,) = p.add(1, 205)
    assert (pair.stamp_a, pair.stamp_b, pair.delta_ns) == (200, 205, 5)
    with pytest.raises(ParameterError):
        p.add(2, 0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 10_000), max_size=40), st.lists(st.integers(0, 10_000), max_size=40), st.integers(0, 500)
)
def test_pairing_properties(a, b, slop):
    a, b = sorted(set(a)), sorted(set(b))
    r = pair_streams(a, b, slop, queue_size=5)
    assert np.all(np.abs(r.deltas_ns) <= slop)
    assert len(set(r.pairs[:, 0].tolist())) == len(r.pairs) == len(set(r.pairs[:, 1].tolist()))
