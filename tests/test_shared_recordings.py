"""`microexp info` on every real recording of $MICROEXP_TESTDATA gives the counts of SOURCES.md.

On test_events_1: SOURCES.md reads the upstream test (event_camera_py tests/test_1.py) as 2,078 rising + 2,078
falling triggers, but that test counts its edges by one field and checks only one of the two counts. Its
checksum (the sum of every CD and trigger time, 2,885,601,049,874) is what pins the decode down: we match it
with 2,079 edges of value 1 and 2,078 of value 0 — the stream starts and ends with a value-1 edge.
"""

import numpy as np
import pytest

from microexp.bags.events import iter_event_packets
from microexp.bags.reader import Bag
from microexp.tools.info import describe

# name: (events, on_events, triggers, t_first_us, t_last_us, width, height)
EXPECTED = {
    ("events", "expelliarmus_evt3_sample.raw"): (219_596, None, 0, 11_718_656, None, 1280, 720),
    ("events", "expelliarmus_evt2_sample.raw"): (539_481, None, 0, None, None, 640, 480),
    ("events", "prophesee_sparklers_gen3_evt2.raw"): (521_252, 185_861, 0, None, None, 640, 480),
    ("events", "tonic_sample.aedat4"): (111_954, None, 0, None, None, 320, 240),
    ("bags", "codecs_evt3_trigger"): (82_469, 41_439, 2, None, None, 1280, 720),
    ("bags", "codecs_libcaer_rollover"): (334_331, 181_908, 0, None, None, 640, 480),
    ("bags", "event_camera_py_test_events_1"): (343_474, 125_183, 4_157, None, None, 640, 480),
    ("bags", "event_camera_py_test_events_2"): (571_266, 211_043, 0, None, None, 346, 260),
}
SPAN_MS = {
    "expelliarmus_evt2_sample.raw": 50.0,
    "prophesee_sparklers_gen3_evt2.raw": 96.0,
    "tonic_sample.aedat4": 590.0,
    "event_camera_py_test_events_1": 2078.0,
    "event_camera_py_test_events_2": 1000.0,
    "codecs_libcaer_rollover": 2000.0,
}


@pytest.mark.parametrize("where,name", sorted(EXPECTED))
def test_recording_counts(testdata, where, name):
    events, on, triggers, t_first, t_last, width, height = EXPECTED[(where, name)]
    info = describe(testdata(where, name))
    assert (info["events"], info["triggers"], info["width"], info["height"]) == (events, triggers, width, height)
    if on is not None:
        assert info["on_events"] == on
    if t_first is not None:
        assert info["t_first_us"] == t_first
    if name in SPAN_MS:
        span_ms = (info["t_last_us"] - info["t_first_us"]) / 1000
        assert abs(span_ms - SPAN_MS[name]) < 0.02 * SPAN_MS[name] + 1
    if where == "bags":
        for topic in info["topics"].values():
            assert topic["seq_gaps"] == 0


def test_evt3_bag_with_triggers_matches_upstream_checksum(testdata):
    total, rising, falling, off = 0, 0, 0, 0
    with Bag(testdata("bags", "event_camera_py_test_events_1")) as bag:
        for _, ev, tr in iter_event_packets(bag, "/event_camera/events"):
            total += int(ev["t"].sum()) + int(tr["t"].sum())
            rising += int(np.count_nonzero(tr["value"] == 1))
            falling += int(np.count_nonzero(tr["value"] == 0))
            off += int(np.count_nonzero(ev["p"] == 0))
    assert total == 2_885_601_049_874
    assert (off, falling, rising) == (218_291, 2_078, 2_079)


def test_tonic_aedat4_imu(testdata):
    info = describe(testdata("events", "tonic_sample.aedat4"))
    assert info["imu_samples"] == 475 and info["frames"] == 0
