"""The renderer node over real DDS: ~/frame (sensor_msgs/Image, rgb8) shows the events of the window in their ON/OFF
colours, the face box and the AU of the inference node's predictions; with the real `ros2`
command line, `ros2 topic hz` measures the frame rate and `ros2 topic echo --once` prints a frame's header and size
(docs/viewing.md, each line as shown)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from helpers.events import packets
from helpers.paths import TESTDATA
from helpers.shown import assert_shown
from helpers.wait import wait_until

from microexp.events.dtype import make_events
from microexp.vision.render_events import Colours, EventFrameRenderer, draw_box, draw_text

pytestmark = pytest.mark.ros
DAVIS = (346, 260)
BOX = (100.0, 90.0, 250.0, 230.0)  # outside the events' rectangle below: its outline covers none of them


def window_events(seed: int = 0) -> np.ndarray:
    """100 ms of random events in x 120..229, y 110..209 (inside BOX, off its outline)."""
    rng = np.random.default_rng(seed)
    n = 20_000
    t = 5_000_000 + np.sort(rng.integers(0, 100_000, n))
    return make_events(rng.integers(120, 230, n), rng.integers(110, 210, n), t, rng.integers(0, 2, n))


def majority_frame(events, width, height, c: Colours) -> np.ndarray:
    """The frame rule, written out independently of the renderer: majority polarity per pixel."""
    idx = events["y"].astype(np.int64) * width + events["x"]
    on = np.bincount(idx[events["p"] == 1], minlength=width * height)
    off = np.bincount(idx[events["p"] == 0], minlength=width * height)
    img = np.empty((height * width, 3), np.uint8)
    img[:] = c.background
    img[on > off], img[off > on], img[(on == off) & (on > 0)] = c.on, c.off, c.both
    return img.reshape(height, width, 3)


def publish_paced(pub, events) -> list:
    """``events`` as EVT3 EventPackets of 1 ms each, published at about a driver's pace; the packets."""
    from event_camera_msgs.msg import EventPacket

    sent = packets("evt3", *DAVIS, events, per_packet_us=1000, frame_id="test_camera")
    for pkt in sent:
        msg = EventPacket()
        msg.header.frame_id = pkt.frame_id
        msg.encoding, msg.width, msg.height, msg.seq = pkt.encoding, pkt.width, pkt.height, pkt.seq
        msg.time_base, msg.events = pkt.time_base, pkt.payload
        pub.publish(msg)
        time.sleep(0.001)
    return sent


def prediction(au_index: int, p: float, box=None):
    """An AUPrediction of ``au_index`` at probability ``p``, with the tracked face box ``box`` (None: no face)."""
    from microexp.aus import AU_CODES
    from microexp_msgs.msg import AUPrediction

    msg = AUPrediction()
    if box is not None:
        msg.face_found, msg.crop_box = True, [float(v) for v in box]
    msg.au_codes = list(AU_CODES)
    probs = [0.0] * len(AU_CODES)
    probs[au_index] = p
    msg.smoothed_probabilities = probs
    msg.smoothed_top1 = au_index
    msg.smoothed_windows = 3
    msg.state = "movement"
    return msg


def check_frame(msg, events) -> None:
    """``msg`` (an Image of /renderer/frame, window 20 ms, label scale 2) against the events, BOX and the label."""
    from microexp.ros.images import from_msg

    assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", *DAVIS, 3 * DAVIS[0])
    assert msg.header.frame_id == "test_camera" and msg.header.stamp.sec > 0
    img = from_msg(msg)
    c = Colours()
    t_end = int(events["t"].max())
    in_window = events[events["t"] > t_end - 20_000]
    expected = majority_frame(in_window, *DAVIS, c)
    overlay = np.zeros_like(expected)
    draw_box(overlay, BOX, (1, 1, 1))
    draw_text(overlay, "AU12 0.87", 4, 4, (1, 1, 1), scale=2, background=(2, 2, 2))
    plain = ~overlay.any(axis=2)
    # every pixel off the overlays: the window's events in their colours, the rest dark
    np.testing.assert_array_equal(img[plain], expected[plain])
    assert (img[plain] == c.on).all(axis=1).sum() > 1000 and (img[plain] == c.off).all(axis=1).sum() > 1000
    # the overlays: the box outline and the label's lit font pixels in the overlay colour
    lit = (overlay == 1).all(axis=2)
    assert lit.sum() > 500 and (img[lit] == c.overlay).all()
    assert (img[(overlay == 2).all(axis=2)] == c.background).all()
    # the same frame as the renderer core gives for those events
    core = EventFrameRenderer(*DAVIS, 20_000, c)
    core.add(events)
    np.testing.assert_array_equal(img, core.render(box=BOX, label="AU12 0.87", label_scale=2))


@pytest.mark.slow
def test_frames_show_the_window_events_the_face_box_and_the_au_label():
    """A publisher sends 100 ms of EVT3 packets (reliable, paced as a driver sends them) and an AUPrediction; the
    frames on /renderer/frame equal, pixel by pixel, the last 20 ms of those events in their colours, with the
    prediction's face box outlined and its AU written in the corner."""
    from sensor_msgs.msg import Image

    from event_camera_msgs.msg import EventPacket
    from microexp.aus import AU_CODES
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.renderer_node import RendererNode
    from microexp.ros.qos import RELIABLE_QOS
    from microexp.ros.runner import Runner
    from microexp_msgs.msg import AUPrediction

    events = window_events()
    runner = Runner("single")
    try:
        node = runner.add(
            RendererNode(
                parameter_overrides=overrides(
                    "renderer",
                    None,
                    events_topic="/test_render/events",
                    predictions_topic="/test_render/au",
                    rate_hz=20.0,
                    window_ms=20.0,
                    stale_s=60.0,
                    label_scale=2,
                )
            )
        )
        frames: list = []
        side = runner.add(rclpy.create_node("test_render_side"))
        side.create_subscription(Image, "/renderer/frame", frames.append, RELIABLE_QOS)
        ev_pub = side.create_publisher(EventPacket, "/test_render/events", RELIABLE_QOS)
        au_pub = side.create_publisher(AUPrediction, "/test_render/au", RELIABLE_QOS)
        runner.start()
        wait_until(lambda: ev_pub.get_subscription_count() > 0, 30, "the renderer never subscribed")
        sent = publish_paced(ev_pub, events)
        wait_until(
            lambda: node.counts["events"] >= len(events), 30, f"the renderer took {node.counts} of {len(sent)} packets"
        )
        assert node.counts["events"] == len(events) and node.counts["decode_errors"] == 0
        k12 = list(AU_CODES).index(12)

        def overlaid_frame():
            au_pub.publish(prediction(k12, 0.87, BOX))
            if frames and node.label and node.box is not None:
                since = len(frames)
                wait_until(lambda: len(frames) > since, 10)  # rendered after both arrived
                return frames[-1]
            return None

        msg = wait_until(overlaid_frame, 30, "no frame with the label and the box", period_s=0.1)
    finally:
        runner.close()
    check_frame(msg, events)


def test_bad_parameters_are_refused_naming_node_and_parameter():
    from microexp.errors import ParameterError
    from microexp.ros import lifecycle
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.renderer_node import RendererNode

    lifecycle.init()
    try:
        for values, needle in (
            ({"on_colour": [300, 0, 0]}, "renderer: on colour"),
            ({"roi": "1,2,3"}, "renderer"),
            ({"events_topic": "/bad//topic"}, "renderer: parameter events_topic"),
            ({"qos": "fast"}, "qos"),
        ):
            with pytest.raises(ParameterError, match=needle):
                RendererNode(parameter_overrides=overrides("renderer", None, **values))
    finally:
        lifecycle.shutdown()


def test_frames_go_dark_and_the_label_goes_when_nothing_new_arrives():
    """No frame before the first packet; the window and the label are dropped after ``stale_s`` without news; the
    fixed ``roi`` is outlined while no tracked box is known (the node's methods called directly, no publisher)."""
    from event_camera_msgs.msg import EventPacket
    from microexp.aus import AU_CODES
    from microexp.ros import lifecycle
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.renderer_node import RendererNode

    lifecycle.init()
    node = None
    try:
        node = RendererNode(
            parameter_overrides=overrides("renderer", None, events_topic="/test_stale/events", roi="100,100,60,40")
        )
        assert node.frame() is None
        (pkt,) = packets("evt3", *DAVIS, make_events([200], [150], [1000], [1]), frame_id="cam")
        msg = EventPacket(encoding=pkt.encoding, width=pkt.width, height=pkt.height, seq=0, time_base=pkt.time_base)
        msg.events = pkt.payload
        node._on_packet("/test_stale/events", msg, {})
        node._on_prediction(prediction(list(AU_CODES).index(12), 0.5))
        c = Colours()
        img = node.frame()
        assert tuple(img[150, 200]) == c.on and tuple(img[100, 100]) == c.overlay and tuple(img[139, 159]) == c.overlay
        assert (img[:30, :80] == c.overlay).all(axis=2).sum() > 20  # the label "AU12 0.50"
        node.last_packet -= 2.0
        node.label_at -= 2.0
        img = node.frame()
        assert tuple(img[150, 200]) == c.background and node.renderer.latest_us is None
        roi_only = np.zeros_like(img)
        draw_box(roi_only, (100, 100, 160, 140), c.overlay)
        np.testing.assert_array_equal(img, np.where(roi_only.any(axis=2, keepdims=True), roi_only, img))
        assert (img == c.overlay).all(axis=2).sum() == (roi_only == c.overlay).all(axis=2).sum()
    finally:
        if node is not None:
            node.destroy_node()
        lifecycle.shutdown()


def test_labels_and_boxes_from_predictions():
    from microexp.aus import AU_CODES
    from microexp.ros.nodes.renderer_node import au_label, prediction_box

    k = list(AU_CODES).index(45)
    assert au_label(prediction(k, 0.5)) == "AU45 0.50"
    msg = prediction(k, 0.5)
    msg.smoothed_windows, msg.top3, msg.probabilities = 0, [k, 0, 1], [0.25 if i == k else 0.0 for i in range(21)]
    assert au_label(msg) == "AU45 0.25"
    msg.state = "rest"
    assert au_label(msg) == "REST"
    msg.state = "no_face"
    assert au_label(msg) == "NO FACE"
    assert prediction_box(prediction(k, 0.5, (1.5, 2, 30, 40.25))) == (1.5, 2.0, 30.0, 40.25)
    no_face = prediction(k, 0.5, (1.5, 2, 30, 40.25))
    no_face.face_found = False  # the crop fell back to the ROI: no face box to show
    assert prediction_box(no_face) is None and prediction_box(prediction(k, 0.5)) is None


# --- the ros2 command line, each line as docs/viewing.md shows it -----------------------------------------------

PLAY = "microexp play --davis-file ../shared/data/events/tonic_sample.aedat4 --loop"
RUN = "ros2 run microexp renderer_node --ros-args -p events_topic:=/davis346/events"
HZ = "ros2 topic hz /renderer/frame"
ECHO = "ros2 topic echo --once /renderer/frame sensor_msgs/msg/Image --no-arr"


def start(line: str, env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_ros2_topic_hz_and_echo_on_the_frame_topic(cli_env, tmp_path):
    """A DAVIS recording looped by `microexp play`, the renderer started with `ros2 run`: `ros2 topic hz` measures
    the frame rate (rate_hz 15 by default), `ros2 topic echo --once` prints one frame's header and geometry."""
    for line in (PLAY, RUN, HZ, ECHO):
        assert_shown(line)
    if not (TESTDATA / "events" / "tonic_sample.aedat4").is_file():
        pytest.skip(f"{TESTDATA}/events/tonic_sample.aedat4 is absent (set MICROEXP_TESTDATA)")
    # the pages run from a folder beside ../shared: give this run one, its data the test recordings
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(TESTDATA.resolve())
    renderer = start(RUN, cli_env, work, tmp_path / "renderer.log")
    play = start(PLAY, cli_env, work, tmp_path / "play.log")
    hz = None
    try:
        res = subprocess.run(["bash", "-c", ECHO], cwd=work, env=cli_env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        out = res.stdout
        assert "encoding: rgb8" in out and "height: 260" in out and "width: 346" in out, out
        assert "step: 1038" in out and "frame_id:" in out and "sec:" in out, out
        hz = start(HZ, cli_env, work, tmp_path / "hz.log")

        def rates():
            found = re.findall(r"average rate: ([0-9.]+)", (tmp_path / "hz.log").read_text())
            return [float(r) for r in found] if len(found) >= 5 else None

        measured = wait_until(rates, 90, "`ros2 topic hz` printed no rate", period_s=0.5)
        print(f"{HZ}: {measured}")
        assert 12.0 <= measured[-1] <= 16.5, (tmp_path / "hz.log").read_text()
        # the renderer drew the events of the recording, not just dark frames
        assert "rendering /davis346/events: " in (tmp_path / "renderer.log").read_text()
    finally:
        for proc in (hz, play, renderer):
            if proc is not None:
                stop(proc)
    for name in ("renderer.log", "play.log"):
        text = (tmp_path / name).read_text()
        assert "Traceback" not in text, text[-3000:]


RECORD = "ros2 launch microexp record.launch.py source:=synthetic sensors:=davis346 subject:=S08 aus:=AU12 out:=recordings/S08 time_scale:=0.5 render:=true"


@pytest.mark.slow
def test_record_launch_with_render_true_publishes_frames_beside_the_recording(cli_env, tmp_path):
    """render:=true adds the renderer to the recording graph: frames of the rig's DAVIS346 events arrive while the
    session records, and the session ends as it does without it (the renderer is no part of it)."""
    from microexp.bags.manifest import load as load_manifest

    assert_shown(RECORD)
    launch = start(RECORD, cli_env, tmp_path, tmp_path / "launch.log")
    try:
        res = subprocess.run(
            ["bash", "-c", ECHO], cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=240
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert "encoding: rgb8" in res.stdout and "height: 260" in res.stdout and "frame_id: davis346" in res.stdout
        code = launch.wait(timeout=300)
    finally:
        stop(launch)
    log = (tmp_path / "launch.log").read_text()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    assert "rendering /davis346/events: " in log, log[-3000:]
    manifest = load_manifest(tmp_path / "recordings" / "S08")
    assert manifest["end_reason"] == "protocol finished" and manifest["segments"][0]["status"] == "kept"
