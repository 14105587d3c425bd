"""Synthetic rig core: AU timing, face rendering, the event simulator, sensor clocks and the rig API."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexp.aus import AU_CODES
from microexp.errors import ParameterError
from microexp.events.dtype import EVENT_DTYPE
from microexp.synth import (
    AU_DEFORMATIONS,
    AU_REGIONS,
    DAVIS346_VIEW,
    EVK4_VIEW,
    DvsConfig,
    DvsPixelArray,
    FaceAnimation,
    FaceParams,
    FrameRenderer,
    SensorClock,
    Subject,
    SyntheticRig,
    au_statistics,
    contact_sheet,
    face_layout,
    log_irradiance,
    make_trial,
    simulate,
    webcam_view,
)
from microexp.synth.dvs import frame_schedule
from microexp.synth.render import layout_roi

FLAT = DvsConfig(mismatch=0.0, refractory_us=0.0, noise_rate_hz=0.0)


# ------------------------------------------------------------------------------------------- AUs and timing


def test_every_au_of_the_paper_has_a_deformation_and_a_region():
    assert set(AU_DEFORMATIONS) == set(AU_CODES) == set(AU_REGIONS)
    assert len(AU_CODES) == 21


@pytest.mark.parametrize("au", AU_CODES)
def test_trial_timing(au):
    for trial in range(5):
        tr = make_trial(au, trial, seed=4)
        assert 0.170 <= tr.movement_s <= 0.500
        assert 0.3 <= tr.onset_s < tr.apex_s <= tr.offset_s < tr.end_s <= tr.duration_s - 0.3
        assert [tr.phase(t) for t in (0.0, tr.onset_s, tr.apex_s, tr.offset_s, tr.end_s)] == [
            "neutral",
            "onset",
            "apex",
            "offset",
            "neutral",
        ]
        a = tr.activation(np.array([tr.onset_s - 0.01, tr.apex_s, 0.5 * (tr.apex_s + tr.offset_s), tr.end_s + 0.01]))
        assert a[0] == 0 and a[-1] == 0 and a[1] == pytest.approx(tr.intensity) and a[2] == pytest.approx(tr.intensity)
        assert 0.6 <= tr.intensity <= 1.0
    assert make_trial(au, 2, seed=4) == make_trial(au, 2, seed=4) != make_trial(au, 3, seed=4)


def test_trial_rejects_bad_values():
    with pytest.raises(ParameterError):
        make_trial("AU99")
    with pytest.raises(ParameterError):
        make_trial(12, intensity=1.5)
    with pytest.raises(ParameterError):
        make_trial(12, duration_s=0.5)


def test_subjects_are_deterministic_and_varied():
    a, b = Subject.generate(2, seed=5), Subject.generate(2, seed=5)
    assert a == b
    subjects = [Subject.generate(i, seed=5) for i in range(20)]
    assert all(150.0 <= s.lux <= 1400.0 for s in subjects)
    assert len({round(s.face_width, 6) for s in subjects}) == 20
    assert Subject.generate(0, lux=300.0).lux == 300.0


def test_blinks_only_when_asked_and_outside_the_au():
    s = Subject.generate(0, seed=1)
    tr = make_trial(12, 0, seed=1, duration_s=10.0)
    t = np.linspace(0, 10, 5001)
    quiet = FaceAnimation(s, tr, natural_blinks=False, idle_motion=0.0).param_matrix(t)
    assert np.all(quiet[:, PARAM("eye_closure")] == 0)
    blinking = FaceAnimation(s, tr, natural_blinks=True, idle_motion=0.0)
    closure = blinking.param_matrix(t)[:, PARAM("eye_closure")]
    during = (t >= tr.onset_s) & (t <= tr.end_s)
    assert np.all(closure[during] == 0)


def PARAM(name):
    from microexp.synth.face import param_index

    return param_index(name)


# -------------------------------------------------------------------------------------------------- render


def test_frames_have_the_sensor_shapes_and_types():
    s = Subject.generate(0, seed=0)
    lay = face_layout(s, FaceParams())
    aps = FrameRenderer(DAVIS346_VIEW, gray=True).render(lay, s, 0)
    assert aps.shape == (260, 346) and aps.dtype == np.uint8
    cam_view = webcam_view(320, 180)
    cam = FrameRenderer(cam_view, gray=False).render(lay, s, 0)
    assert cam.shape == (180, 320, 3) and cam.dtype == np.uint8
    roi = layout_roi([lay], s, cam_view)
    fast = FrameRenderer(cam_view, gray=False).render(lay, s, 0, roi=roi)
    assert fast.shape == cam.shape
    smooth = [cv2.blur(img.astype(np.float32), (9, 9)) for img in (fast, cam)]
    assert np.abs(smooth[0] - smooth[1]).mean() < 1.5  # same picture, other noise
    log = log_irradiance(lay, s, EVK4_VIEW, layout_roi([lay], s, EVK4_VIEW))
    assert log.dtype == np.float32 and np.isfinite(log).all()


def test_intensity_and_noise_follow_lux():
    s = Subject.generate(0, seed=0)
    lay = face_layout(s, FaceParams())
    r = FrameRenderer(DAVIS346_VIEW, gray=True)
    dim = np.stack([r.render(lay, s, k, lux=150.0) for k in range(4)]).astype(float)
    bright = np.stack([r.render(lay, s, k, lux=1400.0) for k in range(4)]).astype(float)
    assert bright.mean() > dim.mean() + 10  # auto-exposure is partial
    patch = (slice(5, 40), slice(5, 60))  # a piece of plain wall
    assert dim[:, patch[0], patch[1]].std(axis=0).mean() > 1.5 * bright[:, patch[0], patch[1]].std(axis=0).mean()
    assert not np.array_equal(dim[0], dim[1])  # fresh noise per frame


def test_each_camera_sees_the_face_at_its_own_place_and_size():
    s = Subject.generate(0, seed=0)
    views = (DAVIS346_VIEW, EVK4_VIEW, webcam_view())
    centres = [v.transform(s)[1] / v.width for v in views]
    assert len({round(c, 3) for c in centres}) == 3  # parallax
    assert all(0.35 < c < 0.65 for c in centres)  # face roughly centred


def test_head_turn_moves_the_nose_further_than_the_outline():
    s = Subject.generate(0, seed=0)
    neutral = face_layout(s, FaceParams())
    turned = face_layout(s, FaceParams.from_dict({"head_yaw": 0.4}))
    shift_outline = turned.head_outline[:, 0].mean() - neutral.head_outline[:, 0].mean()
    nose = [i for i, p in enumerate(neutral.primitives) if len(p.pts) == 12][0]  # a nostril
    shift_nose = turned.primitives[nose].pts[:, 0].mean() - neutral.primitives[nose].pts[:, 0].mean()
    assert shift_nose > shift_outline > 0  # AU51: towards image right


# ---------------------------------------------------------------------------------------- event simulator


def _ramp_events(delta: float, config: DvsConfig, steps: int = 1, seed: int = 0):
    """Events of a 4x3 sensor whose log intensity rises linearly by ``delta`` over 1000 µs."""
    pixels = DvsPixelArray(4, 3, config, seed=seed)
    roi = (0, 0, 4, 3)
    pixels.reset(np.zeros((3, 4), np.float32), roi, 0.0, lux=1000.0)
    out = []
    for k in range(1, steps + 1):
        out.append(pixels.step(np.full((3, 4), delta * k / steps, np.float32), 1000.0 * k / steps))
    return np.concatenate(out)


def test_threshold_crossings_are_interpolated():
    ev = _ramp_events(0.55, DvsConfig(contrast_on=0.25, mismatch=0.0, refractory_us=0.0, noise_rate_hz=0.0))
    assert ev.dtype == EVENT_DTYPE and len(ev) == 24 and np.all(ev["p"] == 1)
    times = sorted(set(ev["t"].tolist()))
    assert times == [round(1000 * 0.25 / 0.55), round(1000 * 0.5 / 0.55)]
    down = _ramp_events(-0.3, DvsConfig(contrast_off=0.25, mismatch=0.0, refractory_us=0.0, noise_rate_hz=0.0))
    assert len(down) == 12 and np.all(down["p"] == 0)


@pytest.mark.parametrize("c", [0.1, 0.2, 0.25, 0.5])
def test_event_count_scales_with_the_contrast_threshold(c):
    ev = _ramp_events(1.01, replace_cfg(FLAT, contrast_on=c), steps=4)  # 1.01: clear of exact multiples
    assert len(ev) == 12 * int(np.floor(1.01 / c))


def replace_cfg(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


def test_refractory_period_is_respected_with_noise():
    cfg = DvsConfig(contrast_on=0.05, mismatch=0.03, refractory_us=150.0, noise_rate_hz=2000.0)
    ev = _ramp_events(2.0, cfg, steps=10)
    assert np.all(np.diff(ev["t"]) >= 0)
    for key in set(zip(ev["x"].tolist(), ev["y"].tolist())):
        t = ev["t"][(ev["x"] == key[0]) & (ev["y"] == key[1])]
        assert np.all(np.diff(t) >= 150)
    # 40 crossings per pixel within 1 ms: without a dead time all of them fire, with 150 µs at most 7.
    free = _ramp_events(2.0, replace_cfg(cfg, refractory_us=0.0, noise_rate_hz=0.0), steps=10)
    blind = _ramp_events(2.0, replace_cfg(cfg, noise_rate_hz=0.0), steps=10)
    assert len(free) >= 12 * 38 and len(blind) <= 12 * 7


def test_threshold_mismatch_and_noise_are_seeded():
    cfg = DvsConfig(noise_rate_hz=50.0)
    a = DvsPixelArray(50, 40, cfg, seed=1)
    b = DvsPixelArray(50, 40, cfg, seed=1)
    c = DvsPixelArray(50, 40, cfg, seed=2)
    assert np.array_equal(a.c_on, b.c_on) and not np.array_equal(a.c_on, c.c_on)
    assert abs(a.c_on.std() / a.c_on.mean() - 0.03) < 0.01
    streams = []
    for px in (a, b, c):
        px.reset(np.zeros((40, 50), np.float32), (0, 0, 50, 40), 0.0, lux=1000.0)
        streams.append(px.step(np.zeros((40, 50), np.float32), 1_000_000.0))
    assert np.array_equal(streams[0], streams[1]) and not np.array_equal(streams[0], streams[2])
    assert len(streams[0]) == pytest.approx(50 * 2000 * 1.0, rel=0.1)  # minus a little dead time
    dim = DvsPixelArray(50, 40, cfg, seed=1)
    dim.reset(np.zeros((40, 50), np.float32), (0, 0, 50, 40), 0.0, lux=150.0)
    assert len(dim.step(np.zeros((40, 50), np.float32), 1_000_000.0)) > 2.2 * len(streams[0])  # sqrt(1000/150)


def test_render_schedule_is_dense_only_while_moving():
    s = Subject.generate(0, seed=0)
    tr = make_trial(51, 0, seed=0)
    anim = FaceAnimation(s, tr)
    times = frame_schedule(anim, DAVIS346_VIEW.transform(s)[0], DvsConfig())
    dt = np.diff(times)
    moving = tr.moving(times[:-1])  # onset and offset; the apex hold is still
    assert times[0] == 0 and times[-1] == pytest.approx(tr.duration_s)
    assert dt[moving].max() <= 1e-3 + 1e-9 and dt[moving].min() >= 2e-4 - 1e-9
    assert dt[~moving].max() <= 1e-2 + 1e-9 and np.median(dt[times[:-1] < tr.onset_s - 0.05]) > 5e-3


# --------------------------------------------------------------------------------------------- per AU


@pytest.fixture(scope="module")
def davis_stats():
    """Signal statistics of every AU on the DAVIS (subject 0, trial 0, still head): about 25 s of CPU."""
    rig = SyntheticRig(subjects=1, sensors=("davis346",), idle_motion=0.0, duration_s=1.5)
    return {row["au"]: row for row in au_statistics(rig)}


@pytest.mark.slow
def test_every_au_produces_events_in_its_face_region(davis_stats):
    for au, row in davis_stats.items():
        assert row["events"] > 40, f"AU{au}: only {row['events']} events"
        assert row["in_region"] > 0.8, f"AU{au}: {row['in_region']:.2f} of the events in its region"


@pytest.mark.slow
def test_where_the_events_are(davis_stats):
    eye_v = Subject.generate(0, seed=0).eye_y
    assert davis_stats[12]["v"] == pytest.approx(0.47, abs=0.08)  # mouth
    assert davis_stats[2]["v"] < eye_v - 0.15  # brows above the eyes
    for au in (5, 41, 43, 45, 61, 62, 63, 64):
        assert abs(davis_stats[au]["v"] - eye_v) < 0.07, au  # at the eyes
    assert davis_stats[26]["v95"] > 0.98  # the chin drops below its rest
    for au in (51, 52, 53, 54):  # the whole head moves
        row = davis_stats[au]
        assert row["v95"] - row["v05"] > 1.2 and row["events"] > 10 * davis_stats[12]["events"]
    assert davis_stats[51]["u"] > davis_stats[52]["u"]  # turned towards opposite sides


def test_gaze_direction_shows_in_the_polarity():
    """Eyes left (AU61, image right): the dark iris covers sclera on its right (OFF) and uncovers it on
    its left (ON) during the onset; AU62 the reverse."""
    s = Subject.generate(0, seed=0)
    centre = DAVIS346_VIEW.transform(s)[1]
    for au, expected in ((61, 1), (62, -1)):
        tr = make_trial(au, 0, seed=0, duration_s=1.2, movement_s=0.3)
        ev = simulate(
            FaceAnimation(s, tr, idle_motion=0.0), DAVIS346_VIEW, replace_cfg(FLAT, contrast_on=0.2, contrast_off=0.2)
        )
        onset = ev[(ev["t"] >= tr.onset_s * 1e6) & (ev["t"] < tr.apex_s * 1e6)]
        for eye in (onset[onset["x"] < centre], onset[onset["x"] >= centre]):  # each eye on its own
            shift = eye["x"][eye["p"] == 0].mean() - eye["x"][eye["p"] == 1].mean()
            assert np.sign(shift) == expected and abs(shift) > 2.0, (au, shift)


def test_lower_threshold_more_events_on_a_face():
    s = Subject.generate(0, seed=0)
    anim = FaceAnimation(s, make_trial(26, 0, seed=0, duration_s=1.2, movement_s=0.25), idle_motion=0.0)
    counts = [len(simulate(anim, DAVIS346_VIEW, replace_cfg(FLAT, contrast_on=c, contrast_off=c))) for c in (0.15, 0.3)]
    assert counts[0] > 1.6 * counts[1]


# ------------------------------------------------------------------------------------------------ the rig


@pytest.fixture(scope="module")
def small_rig():
    return SyntheticRig(subjects=2, seed=3, sensors=("davis346", "webcam"), webcam_size=(320, 180))


def test_clip_is_deterministic(small_rig):
    a = small_rig.clip(1, "AU45", 0).events("davis346")
    again = SyntheticRig(subjects=2, seed=3, sensors=("davis346", "webcam"), webcam_size=(320, 180))
    b = again.clip(1, "AU45", 0).events("davis346")
    assert a.dtype == EVENT_DTYPE and len(a) > 0 and np.array_equal(a, b)
    c = SyntheticRig(subjects=2, seed=4, sensors=("davis346",)).clip(1, "AU45", 0).events("davis346")
    assert not np.array_equal(a, c)


def test_stream_matches_batch_and_is_ordered(small_rig):
    clip = small_rig.clip(0, "AU12", 1, host_start_s=100.0)
    msgs = list(clip.stream(chunk_s=0.01))
    arrivals = [m.host_time_s for m in msgs]
    assert arrivals == sorted(arrivals)
    kinds = {}
    for m in msgs:
        kinds.setdefault((m.sensor, m.kind), []).append(m)
    assert len(kinds[("label", "label")]) == 5
    assert [m.payload.phase for m in kinds[("label", "label")]] == ["neutral", "onset", "apex", "offset", "neutral"]
    assert abs(len(kinds[("davis346", "frame")]) - 100) <= 1 and abs(len(kinds[("webcam", "frame")]) - 150) <= 1
    assert kinds[("webcam", "frame")][0].payload.shape == (180, 320, 3)
    events = np.concatenate([m.payload for m in kinds[("davis346", "events")]])
    assert np.array_equal(events, clip.events("davis346"))
    for m in msgs:
        if m.kind != "label":
            assert m.host_time_s > m.true_time_s
    for _key, group in kinds.items():
        assert [m.seq for m in group] == list(range(len(group)))


def test_sensor_stamps_follow_the_sensor_clock(small_rig):
    clip = small_rig.clip(0, "AU2", 0, host_start_s=50.0)
    clock = small_rig.setups["davis346"].clock
    assert clock.drift_ppm != 0 and clock.offset_us != 0
    scene = clip.scene_events("davis346")
    stamped = clip.events("davis346")
    host = clock.host_s(stamped["t"])
    assert np.all(np.abs(host - (50.0 + scene["t"] * 1e-6)) < 2e-6)
    stamps, true_s = clip.frame_stamps("davis346")
    assert np.allclose(np.diff(stamps), 25_000, atol=1)  # regular on the sensor clock
    assert np.all((true_s >= 50.0) & (true_s <= 50.0 + clip.duration_s))


def test_clock_model():
    c = SensorClock(drift_ppm=-40.0, offset_us=123.0, t0_s=10.0)
    assert c.sensor_us(10.0) == 123
    assert c.sensor_us(110.0) == 123 + 100_000_000 - 4000
    with pytest.raises(ParameterError):
        SensorClock(drift_ppm=1e6)


def test_contact_sheet(tmp_path, small_rig):
    path = contact_sheet(tmp_path / "sheet.png", rig=small_rig, subject=0, aus=[12, 51], columns=2)
    img = cv2.imread(str(path))
    assert img is not None and img.shape[0] > 260 and img.shape[1] > 2 * 3 * 346


def test_rig_rejects_unknown_sensors_and_subjects(small_rig):
    with pytest.raises(ParameterError):
        SyntheticRig(sensors=("kinect",))
    with pytest.raises(ParameterError):
        small_rig.clip(7, 12)
    with pytest.raises(ParameterError):
        small_rig.clip(0, 12).events("evk4")


def test_session_chains_clips_on_running_clocks():
    rig = SyntheticRig(subjects=1, seed=5, sensors=("davis346",), duration_s=1.2)
    with pytest.raises(ParameterError):
        rig.session([(0, 12, 0)], gap_s=0.1)
    msgs = list(rig.session([(0, 45, 0), (0, 61, 0)], gap_s=1.0, host_start_s=20.0))
    arrivals = [m.host_time_s for m in msgs]
    assert arrivals == sorted(arrivals)
    labels = [m.payload for m in msgs if m.kind == "label"]
    assert [lab.au for lab in labels] == [45] * 5 + [61] * 5
    assert labels[5].onset_s > 20.0 + 1.2 + 1.0
    stamps = np.concatenate([m.payload["t"] for m in msgs if m.kind == "events"])
    assert np.all(np.diff(stamps) >= 0)  # one sensor clock throughout
