"""What the monitor page shows, without ROS or a browser: MonitorState fed plain values under a clock of the test's
own, and the recorder's diagnostics as the node parses them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from microexp.aus import AU_CODES
from microexp.events.dtype import EVENT_DTYPE
from microexp.monitor.state import MonitorState, clean, scaled, sensor_of
from microexp.vision.render_events import Colours


class Clock:
    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def events(xs, ys, ts, ps=None):
    ev = np.zeros(len(xs), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"] = xs, ys, ts
    ev["p"] = ps if ps is not None else 1
    return ev


def prediction(sensor="davis346", state="movement", box=(100.0, 50.0, 220.0, 170.0), face=True, au=12, p=0.8):
    probs = [0.0] * len(AU_CODES)
    k = list(AU_CODES).index(au)
    probs[k] = p
    return {
        "sensor": sensor,
        "state": state,
        "au_codes": list(AU_CODES),
        "probabilities": probs,
        "smoothed_probabilities": probs,
        "smoothed_windows": 3,
        "face_found": face,
        "crop_box": list(box),
        "latency_ms": 4.5,
        "events": 1200,
        "model_id": "m@1",
    }


def test_sensor_states_follow_the_stale_time():
    clock = Clock()
    st = MonitorState(stale_s=1.0, clock=clock)
    st.sync([{"sensor": "evk4", "offset_ms": 5.0, "drift_ppm": 1.0, "locked": True}])
    assert st.snapshot()["sensors"]["evk4"]["state"] == "waiting"  # clock state, no data yet
    for i in range(10):
        clock.t += 0.05
        st.events("/evk4/events", events([1, 2, 3], [1, 1, 1], [i * 1000 + 1, i * 1000 + 2, i * 1000 + 3]), 1280, 720)
    snap = st.snapshot()["sensors"]["evk4"]
    assert snap["state"] == "streaming" and snap["streams"]["events"]["rate_hz"] == 10.0
    assert snap["streams"]["events"]["events_per_s"] == 30
    clock.t += 0.9
    assert st.snapshot()["sensors"]["evk4"]["state"] == "streaming"
    clock.t += 0.2
    snap = st.snapshot()["sensors"]["evk4"]
    assert snap["state"] == "stopped" and snap["streams"]["events"]["rate_hz"] == 0.0


def test_clock_offset_is_shown_as_its_change_since_first_lock_and_nan_never_reaches_json():
    clock = Clock()
    st = MonitorState(clock=clock)
    st.sync([{"sensor": "davis346", "offset_ms": float("nan"), "drift_ppm": float("nan"), "locked": False}])
    st.sync([{"sensor": "davis346", "offset_ms": 1.7e12, "drift_ppm": 3.0, "locked": True}])
    st.sync([{"sensor": "davis346", "offset_ms": 1.7e12 + 0.25, "drift_ppm": float("inf"), "locked": True}])
    sync = st.snapshot()["sensors"]["davis346"]["sync"]
    assert sync["offset_change_ms"] == pytest.approx(0.25, abs=1e-3) and sync["drift_ppm"] is None
    json.loads(json.dumps(st.snapshot(), allow_nan=False))
    assert clean({"a": [1.0, math.nan], "b": (math.inf,)}) == {"a": [1.0, None], "b": [None]}


def test_event_frame_has_the_window_events_and_the_face_box_of_its_own_sensor_only():
    clock = Clock()
    c = Colours()
    st = MonitorState(window_us=10_000, clock=clock)
    st.events("/davis346/events", events([10, 300], [20, 200], [1_000, 30_000], [1, 0]), 346, 260)
    st.events("/evk4/events", events([5], [5], [1_000]), 1280, 720)
    st.prediction(prediction(box=(100.0, 50.0, 220.0, 170.0)))
    img, seq = st.frame("/davis346/events")
    assert img.shape == (260, 346, 3) and seq == 1
    assert tuple(img[200, 300]) == c.off and tuple(img[20, 10]) == c.background  # 29 ms old: out of the window
    outline = (img == c.overlay).all(axis=2)
    ys, xs = np.nonzero(outline)
    assert (xs.min(), ys.min(), xs.max(), ys.max()) == (100, 50, 219, 169)
    evk4, _ = st.frame("/evk4/events")  # 1280 wide: shown at half size, no box (the prediction is the DAVIS's)
    assert evk4.shape == (360, 640, 3) and not (evk4 == c.overlay).all(axis=2).any()
    st.prediction(prediction(face=False))  # no face: no box
    assert not (st.frame("/davis346/events")[0] == c.overlay).all(axis=2).any()
    st.prediction(prediction())
    clock.t += 1.5  # the stream stopped: the frame goes dark and the stale prediction's box goes
    img, _ = st.frame("/davis346/events")
    assert (img == c.background).all()


def test_prediction_bars_states_and_au_events():
    clock = Clock()
    st = MonitorState(clock=clock)
    assert st.snapshot()["prediction"] is None
    st.prediction(prediction(au=45, p=0.7))
    p = st.snapshot()["prediction"]
    assert p["state"] == "movement" and p["top"][0] == ["AU45", 0.7] and len(p["top"]) == 5
    st.prediction(prediction(state="no_face", face=False))
    p = st.snapshot()["prediction"]
    assert p["state"] == "no_face" and p["top"] == []
    clock.t += 2.0
    assert st.snapshot()["prediction"]["state"] == "stale"
    st.au_event({"au": "AU12", "confidence": 0.9, "onset_us": 1_000_000, "offset_us": 1_400_000, "sensor": "davis346"})
    clock.t += 3.0
    (e,) = st.snapshot()["au_events"]
    assert e["au"] == "AU12" and e["age_s"] == 3.0


def test_protocol_segments_and_recorder_disk_rate():
    from microexp.ros.nodes.monitor_node import recorder_status

    clock = Clock()
    st = MonitorState(clock=clock)
    st.ground_truth({"subject": "S05", "au": "AU12", "trial": 1, "phase": "apex"})
    st.ground_truth({"subject": "S05", "au": "", "trial": 1, "phase": "apex"})  # no AU named: AU12 stays
    st.phase("perform")
    st.segment({"event": "start", "segment_id": 3, "subject": "S05", "au": "AU12", "trial": 1, "status": "open"})
    values = {
        "bytes": 1_000_000,
        "queued_bytes": 10,
        "free_bytes": 5 << 30,
        "segments": 3,
        "segment.id": 3,
        "segment.name": "seg_0003_AU12_t1",
        "topic./evk4/events.received": 500,
        "topic./evk4/events.lost": 2,
        "topic./davis346/events.received": 100,
        "topic./davis346/events.lost": 0,
    }
    st.recorder(recorder_status(values))
    clock.t += 2.0
    st.recorder(recorder_status(dict(values, bytes=5_000_000)))
    snap = st.snapshot()
    assert snap["protocol"] | {"age_s": 0} == {
        "subject": "S05",
        "au": "AU12",
        "trial": 1,
        "phase": "perform",
        "movement": "apex",
        "segment": 3,
        "segment_event": "start",
        "segment_status": "open",
        "segments": 3,
        "age_s": 0,
    }
    rec = snap["recorder"]
    assert (
        rec["disk_rate"] == 2_000_000 and rec["free_bytes"] == 5 << 30 and rec["segment"]["name"].startswith("seg_0003")
    )
    st.events("/evk4/events", events([1], [1], [1]), 1280, 720)
    assert snap["sensors"] == {} and st.snapshot()["sensors"]["evk4"]["lost"] == 2


def test_images_are_rgb_scaled_and_helpers():
    st = MonitorState()
    bgr = np.zeros((720, 1280, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    st.image("/webcam/image_raw", bgr, "bgr8")
    img, seq = st.frame("/webcam/image_raw")
    assert img.shape == (240, 427, 3) and tuple(img[0, 0]) == (0, 0, 255) and seq == 1
    st.image("/davis346/image_raw", np.full((260, 346), 7, dtype=np.uint8), "mono8")
    assert tuple(st.frame("/davis346/image_raw")[0][3, 3]) == (7, 7, 7)
    st.count("/webcam/image_raw", "image")
    assert st.snapshot()["sensors"]["webcam"]["streams"]["image"]["rate_hz"] == 2.0
    assert sensor_of("/evk4/events") == "evk4" and sensor_of("events") == "events"
    assert scaled(np.zeros((10, 1300, 3)), 640)[1] == 3
    assert st.frame("/nothing") is None
