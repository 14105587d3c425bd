"""Sensor nodes over real DDS: file playback publishes exactly what the recording holds (`microexp play
--count`, a subscriber in the same graph decoding every packet), and faults end cleanly with a message."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from helpers.wait import wait_until

from microexp.errors import MicroexpError
from microexp.tools.info import describe

pytestmark = pytest.mark.ros


def play(*args, timeout=240, code=0):
    res = subprocess.run(
        [sys.executable, "-m", "microexp.cli", "play", "--count", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert res.returncode == code, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1]), res.stderr + res.stdout


@pytest.mark.parametrize(
    "name", ["expelliarmus_evt3_sample.raw", "expelliarmus_evt2_sample.raw", "prophesee_sparklers_gen3_evt2.raw"]
)
def test_evk4_node_publishes_every_event_of_the_file(testdata, name):
    path = testdata("events", name)
    counts, _ = play("--evk4-file", path, "--rate", "0")
    topic = counts["/evk4/events"]
    info = describe(path)
    assert topic["events"] == info["events"] and topic["on_events"] == info["on_events"]
    assert topic["messages"] == topic["published"] > 1 and topic["seq_gaps"] == 0


def test_davis_node_publishes_events_and_imu_of_the_file(testdata):
    path = testdata("events", "tonic_sample.aedat4")
    counts, _ = play("--davis-file", path, "--rate", "4")
    info = describe(path)
    ev = counts["/davis346/events"]
    assert ev["events"] == info["events"] == 111_954 and ev["seq_gaps"] == 0
    assert ev["t_first_us"] == info["t_first_us"] and ev["t_last_us"] == info["t_last_us"]
    assert counts["/davis346/imu"]["messages"] == info["imu_samples"] == 475
    assert counts.get("/davis346/image_raw", {}).get("messages", 0) == info["frames"] == 0


def write_video(path, frames=24, size=(160, 120)):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), i * 10 % 255, np.uint8)
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        out.write(img)
    out.release()
    return path


def test_webcam_node_publishes_every_frame_of_a_video(tmp_path):
    video = write_video(tmp_path / "face.avi", frames=24)
    counts, _ = play("--webcam-file", video, "--rate", "0")
    assert counts["/webcam/image_raw"]["frames"] == 24 == counts["/webcam/image_raw"]["published"]
    assert counts["/webcam/preview/image_raw"]["frames"] == 24


def test_raw_file_turning_corrupt_mid_stream_stops_cleanly(testdata, tmp_path):
    src = testdata("events", "expelliarmus_evt3_sample.raw")
    bad = tmp_path / "corrupt.raw"
    shutil.copy(src, bad)
    bad.chmod(0o644)
    data = bytearray(bad.read_bytes())
    cut = len(data) // 2 & ~1
    data[cut : cut + 2] = (0x9123).to_bytes(2, "little")  # a reserved word type
    bad.write_bytes(bytes(data))
    counts, err = play("--evk4-file", bad, "--rate", "0", code=2)  # what played is counted; the exit says it failed
    assert "corrupt EVT3 data at byte" in err and f"microexp play: error: {bad}: corrupt EVT3" in err
    assert 0 < counts["/evk4/events"]["events"] < describe(src)["events"]


def test_truncated_video_ends_cleanly(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=30)
    data = video.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    counts, err = play("--webcam-file", tmp_path / "cut.avi", "--rate", "0", timeout=120)
    assert 0 < counts["/webcam/image_raw"]["frames"] < 30
    assert "capture finished" in err


def test_absent_webcam_retries_and_keeps_running(graph):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.webcam_node import WebcamNode

    node = graph.add(
        WebcamNode(
            parameter_overrides=overrides(
                "webcam", None, mode="device", device="/dev/microexp-no-such-camera", retry_interval_s=0.2
            )
        )
    )
    graph.start()
    wait_until(lambda: node.open_failures >= 3, 30, "the webcam node did not retry three times")
    assert not node.finished.is_set()


def test_absent_davis_retries_and_keeps_running(graph, capfd):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.davis346_node import Davis346Node

    node = graph.add(Davis346Node(parameter_overrides=overrides("davis346", None, mode="device", retry_interval_s=0.2)))
    graph.start()
    wait_until(lambda: node.open_failures >= 2, 30, "the DAVIS node did not retry twice")
    assert not node.finished.is_set()
    # dv-processing's own error for an empty device list is an index error; the log says what it means
    lines = [line for line in capfd.readouterr().err.splitlines() if "cannot be opened" in line]
    assert lines and "DAVIS346 (any) cannot be opened (no DAVIS camera found on USB); retrying in 0.2 s" in lines[0]


def test_evk4_device_mode_without_openeb_fails_at_start(graph):
    from microexp.drivers.evk4 import openeb_available
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.evk4_node import Evk4Node

    if openeb_available() is None:
        pytest.skip("OpenEB is built here: device mode starts (tests/test_evk4_device.py covers it)")

    with pytest.raises(MicroexpError, match="OpenEB"):
        Evk4Node(parameter_overrides=overrides("evk4", None, mode="device"))


def test_davis_file_that_is_not_aedat4_fails_at_start_naming_it(graph, tmp_path):
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.davis346_node import Davis346Node

    bad = tmp_path / "x.aedat4"
    bad.write_bytes(b"#!AER-DAT4.0\r\n" + b"\x00" * 100)
    with pytest.raises(MicroexpError, match="x.aedat4"):
        Davis346Node(parameter_overrides=overrides("davis346", None, mode="file", file=str(bad)))


def test_a_node_that_fails_at_start_leaves_the_graph_at_once(graph, tmp_path):
    """A half-built node stayed on the graph until the garbage collector ran: a best-effort publisher of
    /davis346/image_raw that lowered a later counter's QoS to best effort, which then lost APS frames."""
    import gc

    import rclpy

    from microexp.ros.compose import overrides
    from microexp.ros.nodes.davis346_node import Davis346Node
    from microexp.ros.nodes.recorder_node import RecorderNode

    bad = tmp_path / "x.aedat4"
    bad.write_bytes(b"#!AER-DAT4.0\r\n" + b"\x00" * 100)
    observer = graph.add(rclpy.create_node("ghost_observer"))
    gc.disable()  # what the collector would clean up some time later must already be gone
    try:
        with pytest.raises(MicroexpError, match="x.aedat4"):  # raised by Davis346Node after its publishers exist
            Davis346Node(parameter_overrides=overrides("davis346", None, mode="file", file=str(bad)))
        with pytest.raises(MicroexpError, match="parameter topics"):  # raised after the recorder joined the graph
            RecorderNode(
                parameter_overrides=overrides("recorder", None, out=str(tmp_path / "rec"), topics=["/a|no_type"])
            )
        assert observer.get_publishers_info_by_topic("/davis346/image_raw") == []
        assert observer.get_publishers_info_by_topic("/davis346/events") == []
        assert not [n for n in observer.get_node_names() if n in ("davis346", "recorder")]
    finally:
        gc.enable()


def test_davis_node_publishes_aps_frames_of_the_file(tmp_path):
    """No real DAVIS recording with APS frames is in the shared data: dv-processing writes one here."""
    dv = pytest.importorskip("dv_processing")
    path = tmp_path / "davis_frames.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.DAVISConfig("DAVIS346_TEST", (346, 260)))
    for k in range(12):
        store = dv.EventStore()
        for i in range(50):
            store.push_back((10_000 * k + 20 * i, (7 * i + k) % 346, (3 * i) % 260, bool(i % 2)))
        writer.writeEvents(store)
        writer.writeFrame(
            dv.Frame(10_000 * k + 5_000, 2000, 0, 0, np.full((260, 346), k, np.uint8), dv.FrameSource.SENSOR)
        )
    del writer
    counts, _ = play("--davis-file", path, "--rate", "0")
    assert counts["/davis346/image_raw"]["frames"] == 12 == describe(path)["frames"]
    assert counts["/davis346/events"]["events"] == 600 and counts["/davis346/events"]["seq_gaps"] == 0


def test_a_publish_racing_the_nodes_stop_ends_playback_without_an_error():
    """The node is destroyed (Ctrl-C, SIGTERM) while its source thread still publishes: the publish that fails on
    a destroyed publisher is a stop, not a playback error (which would make `microexp play` exit 1)."""
    import rclpy
    from rclpy.parameter import Parameter
    from std_msgs.msg import String

    from microexp.ros import lifecycle
    from microexp.ros.nodes.sensor import SensorNode, wait_param

    lifecycle.init()
    node = SensorNode("race", [wait_param()], parameter_overrides=[Parameter("wait_for_subscribers_s", value=0.0)])
    pub = node.create_publisher(String, "~/out", 10)

    def body():
        pub.publish(String(data="before"))
        node.stopping.set()  # what destroy_node does first
        node.destroy_publisher(pub)
        pub.publish(String(data="after"))

    try:
        node.play_file(body, lambda: "playback finished")
        assert node.finished.is_set() and node.playback_error == ""
        assert rclpy.ok(), "the context stays up until the nodes are destroyed"
    finally:
        node.destroy_node()
        lifecycle.shutdown()
