"""AEDAT4 through dv-processing: the tonic sample recording, a DAVIS-like file written by dv-processing, and
broken files (which must give FormatError naming the file, never a crash or a hang)."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from helpers.paths import testdata_path as data_path

from microexp.errors import FormatError
from microexp.events.aedat4 import IMU_DTYPE, check_aedat4, iter_aedat4, read_aedat4
from microexp.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE


@pytest.fixture(scope="module")
def sample():
    return data_path("events", "tonic_sample.aedat4")


def test_tonic_sample(sample):
    rec = read_aedat4(sample)
    assert (rec.width, rec.height) == (320, 240)
    assert rec.camera == "DVXplorer_DXB00010"
    assert rec.events.dtype == EVENT_DTYPE and rec.events.shape[0] == 111_954
    assert rec.imu.dtype == IMU_DTYPE and rec.imu.shape[0] == 475
    assert rec.triggers.dtype == TRIGGER_DTYPE and rec.triggers.shape[0] == 0
    assert rec.frames == [] and rec.frame_t.shape == (0,)
    assert abs(rec.duration_us / 1e6 - 0.59) < 0.005
    t = rec.events["t"]
    assert bool(np.all(np.diff(t) >= 0)) and int(t[0]) > 1_600_000_000_000_000  # µs since the epoch
    assert int(rec.events["x"].max()) < 320 and int(rec.events["y"].max()) < 240
    assert set(np.unique(rec.events["p"]).tolist()) == {0, 1}
    # IMU: a camera at rest measures about 1 g
    g = np.sqrt(rec.imu["ax"] ** 2 + rec.imu["ay"] ** 2 + rec.imu["az"] ** 2)
    assert 0.8 < float(np.median(g)) < 1.2
    assert bool(np.all(np.diff(rec.imu["t"]) >= 0))
    assert check_aedat4(sample)["streams"] == {0: 59, 2: 59}


def test_tonic_sample_playback_in_time_order(sample):
    rec = read_aedat4(sample)
    items = list(iter_aedat4(sample))
    assert {i.kind for i in items} == {"events", "imu"}
    times = [i.t for i in items]
    assert times == sorted(times)
    ev = np.concatenate([i.data for i in items if i.kind == "events"])
    assert np.array_equal(ev, rec.events)
    imu = np.concatenate([i.data for i in items if i.kind == "imu"])
    assert np.array_equal(imu, rec.imu)


@pytest.fixture(scope="module")
def davis_file(tmp_path_factory):
    """A DAVIS346-like recording with events, APS frames, IMU and triggers, written by dv-processing."""
    dv = pytest.importorskip("dv_processing")
    path = tmp_path_factory.mktemp("aedat") / "davis.aedat4"
    cfg = dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_00000499", (346, 260))
    writer = dv.io.MonoCameraWriter(str(path), cfg)
    for k in range(3):
        store = dv.EventStore()
        for i in range(5):
            store.push_back((1000 + 100 * k + i, 10 * i + k, 2 * i, bool(i % 2)))
        writer.writeEvents(store)
        img = np.full((260, 346), 10 * k, np.uint8)
        img[0, : k + 1] = 255
        writer.writeFrame(dv.Frame(1050 + 100 * k, 2000 + k, 0, 0, img, dv.FrameSource.SENSOR))
        writer.writeImu(dv.IMU(1010 + 100 * k, 25.0, 0.0, -1.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0))
        writer.writeTrigger(dv.Trigger(1020 + 100 * k, dv.TriggerType.EXTERNAL_SIGNAL_RISING_EDGE))
        writer.writeTrigger(dv.Trigger(1030 + 100 * k, dv.TriggerType.EXTERNAL_SIGNAL_FALLING_EDGE))
    del writer  # closes the file
    return path


def test_davis_file_with_frames_imu_triggers(davis_file):
    rec = read_aedat4(davis_file)
    assert (rec.width, rec.height, rec.camera) == (346, 260, "DAVIS346_00000499")
    assert rec.events.shape[0] == 15
    assert rec.events[:5].tolist() == [
        (0, 0, 1000, 0),
        (10, 2, 1001, 1),
        (20, 4, 1002, 0),
        (30, 6, 1003, 1),
        (40, 8, 1004, 0),
    ]
    assert rec.frame_t.tolist() == [1050, 1150, 1250]
    assert [f.exposure_us for f in rec.frames] == [2000, 2001, 2002]
    for k, f in enumerate(rec.frames):
        assert f.image.shape == (260, 346) and f.image.dtype == np.uint8
        assert int(f.image[1, 1]) == 10 * k and int(f.image[0, : k + 1].min()) == 255
    assert rec.imu["t"].tolist() == [1010, 1110, 1210]
    assert rec.imu[0]["ay"] == -1.0 and rec.imu[0]["gz"] == 3.0 and rec.imu[0]["temp"] == 25.0
    assert rec.triggers.tolist() == [(1020, 1, 1), (1030, 2, 0), (1120, 1, 1), (1130, 2, 0), (1220, 1, 1), (1230, 2, 0)]
    items = list(iter_aedat4(davis_file))
    assert [i.t for i in items] == sorted(i.t for i in items)
    assert [i.data.t for i in items if i.kind == "frame"] == [1050, 1150, 1250]
    assert sum(len(i.data) for i in items if i.kind == "events") == 15


# --------------------------------------------------------------------------------------------- bad input


def _bad_files(src: bytes):
    rng = random.Random(1)
    table_pos = len(src) - 4010  # the sample's FileDataTable (checked in the test below)
    yield "empty", b""
    yield "magic_only", src[:14]
    yield "prefix_of_magic", src[:5]
    yield "wrong_magic", b"#!AER-DAT3.1\r\n" + src[14:]
    yield "no_crlf", src[:12] + b"\n\n" + src[14:]
    yield "random", bytes(rng.randrange(256) for _ in range(5000))
    yield "magic_random", src[:14] + bytes(rng.randrange(256) for _ in range(5000))
    for n in (17, 20, 1000, 5000, 100_000, 500_000, table_pos - 3, table_pos + 100, len(src) - 1):
        yield f"truncated_{n}", src[:n]
    b = bytearray(src)
    b[14:18] = struct.pack("<i", -5)
    yield "negative_header_size", bytes(b)
    b = bytearray(src)
    for i in range(300_000, 300_400):  # inside an LZ4 packet: dv-processing 2.0.4 hangs on this one
        b[i] = rng.randrange(256)
    yield "corrupt_packet", bytes(b)
    b = bytearray(src)
    b[2334 + 4 : 2334 + 8] = struct.pack("<i", 10**9)  # first packet's size
    yield "corrupt_packet_size", bytes(b)
    b = bytearray(src)
    for i in range(table_pos + 20, table_pos + 60):
        b[i] = rng.randrange(256)
    yield "corrupt_index", bytes(b)


def test_sample_layout_assumed_by_the_bad_file_cases(sample):
    info = check_aedat4(sample)
    assert info["data_table"] == sample.stat().st_size - 4010 and info["compression"] == 1
    src = sample.read_bytes()
    assert struct.unpack_from("<ii", src, 2334) == (0, 7949)


@pytest.mark.timeout(120)
def test_bad_files_give_format_errors(sample, tmp_path):
    src = sample.read_bytes()
    for name, data in _bad_files(src):
        path = tmp_path / f"{name}.aedat4"
        path.write_bytes(data)
        with pytest.raises(FormatError) as info:
            read_aedat4(path)
        err = info.value
        assert err.path == str(path), name
        assert str(path) in str(err) and err.reason, name
        with pytest.raises(FormatError):
            list(iter_aedat4(path))


def test_error_messages_are_specific(sample, tmp_path):
    p = tmp_path / "x.aedat4"
    p.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        read_aedat4(p)
    p.write_bytes(b"%PDF-1.7 and more")
    with pytest.raises(FormatError, match="not an AEDAT4 file") as info:
        read_aedat4(p)
    assert info.value.offset == 0
    p.write_bytes(sample.read_bytes()[:100_000])
    with pytest.raises(FormatError, match="truncated"):
        read_aedat4(p)
    with pytest.raises(FormatError, match="cannot open"):
        read_aedat4(tmp_path / "missing.aedat4")


def test_a_directory_is_not_a_recording(tmp_path):
    with pytest.raises(FormatError):
        read_aedat4(tmp_path)
