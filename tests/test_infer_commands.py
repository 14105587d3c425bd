"""`microexp infer` and `microexp watch` (microexp.ros.commands): start errors, ROS arguments, discovery and
rendering, and that the commands are registered and light to import."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers.cli import microexp

from microexp.aus import AU_CODES

rclpy = pytest.importorskip("rclpy")


@pytest.mark.ros
def test_microexp_infer_with_a_missing_model_exits_with_one_line(tmp_path):
    res = microexp("infer", "--model", str(tmp_path / "absent.pt"), timeout=120)
    assert res.returncode == 2
    expected = f"microexp infer: error: {tmp_path / 'absent.pt'}: no such checkpoint file"
    assert res.stderr.strip().splitlines() == [expected]


@pytest.mark.ros
def test_microexp_infer_passes_ros_args_like_ros2_run(random_checkpoint):
    """What launch/inference.launch.py relies on: `microexp infer --ros-args ...` (node name, remappings,
    parameters); --duration stops it and prints the counters as JSON."""
    res = microexp(
        "infer",
        "--model",
        str(random_checkpoint),
        "--duration",
        "0.5",
        "--ros-args",
        "-r",
        "__node:=launched_inference",
        "-r",
        "/evk4/events:=/remapped/events",
        "-p",
        "horizon:=7",
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["node"] == "/launched_inference" and out["events_topic"] == "/remapped/events"
    assert out["model_id"].startswith("random_untrained_snn.pt@") and out["published"] == 0


@pytest.mark.ros
def test_microexp_watch_discovers_any_au_topic_and_shows_top3_latency_and_skipped(tmp_path):
    """`microexp watch` against a graph it knows nothing about: some node publishing AUPrediction and
    DiagnosticArray; watch discovers the topic, prints two views and exits."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from microexp_msgs.msg import AUPrediction

    rclpy.init()
    node = rclpy.create_node("some_other_graph")
    pub = node.create_publisher(AUPrediction, "/some_other_graph/au", 10)
    diag_pub = node.create_publisher(DiagnosticArray, "/some_other_graph/diagnostics", 10)
    watch = subprocess.Popen(
        [sys.executable, "-m", "microexp.cli", "watch", "--count", "2", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        k = 0
        while watch.poll() is None and k < 600:
            msg = AUPrediction()
            msg.window_start_us, msg.window_end_us = 33_000 * k, 33_000 * (k + 1)
            msg.sensor, msg.model_id, msg.events, msg.latency_ms = "evk4", "m.pt@abc", 1234, 2.5
            msg.au_codes = np.asarray(AU_CODES, np.uint8)
            p = np.full(21, 0.02, np.float32)
            p[[5, 12, 0]] = [0.4, 0.2, 0.1]
            msg.probabilities = msg.smoothed_probabilities = p
            msg.top3 = np.asarray([5, 12, 0], np.uint8)
            msg.smoothed_top1, msg.smoothed_windows = 5, 10
            pub.publish(msg)
            status = DiagnosticStatus(
                name="x", message="", values=[KeyValue(key="skipped", value="7"), KeyValue(key="resets", value="2")]
            )
            diag_pub.publish(DiagnosticArray(status=[status]))
            k += 1
            time.sleep(0.1)  # stimulus: predictions at 10 Hz while `watch` runs (not a wait before an assert)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
        node.destroy_node()
        rclpy.shutdown()
    assert watch.returncode == 0, err
    assert "watching /some_other_graph/au" in out
    assert out.count("1. AU12  Lip Corner Puller") == 2 and "2. AU45" in out and "3. AU2 " in out
    assert "latency 2.50 ms" in out and "events 1234" in out and "smoothed over 10 windows: AU12" in out
    assert "skipped" in out


def test_watch_render_without_diagnostics_counts_window_holes():
    from microexp.ros.commands.watch import WatchState, diagnostics_topic_for, render
    from microexp_msgs.msg import AUPrediction

    state = WatchState()
    text = ""
    for k in (0, 1, 4):  # windows 2 and 3 never arrived
        msg = AUPrediction()
        msg.window_start_us, msg.window_end_us = 33_000 * k, 33_000 * (k + 1)
        msg.au_codes = np.asarray(AU_CODES, np.uint8)
        msg.probabilities = np.eye(21, dtype=np.float32)[3]
        msg.top3 = np.asarray([3, 0, 1], np.uint8)
        state.add(msg)
        text = render(msg, "/x/au", state)
    assert "1. AU6   Cheek Raiser" in text and "skipped ≥2 (window holes)" in text
    assert diagnostics_topic_for("/ns/inference/au") == "/ns/inference/diagnostics"
    assert diagnostics_topic_for("/predictions") is None


def test_watch_render_says_no_movement_at_rest_and_lists_the_au_events():
    from microexp.ros.commands.watch import WatchState, events_topic_for, render
    from microexp_msgs.msg import AUEvent, AUPrediction

    state = WatchState()
    msg = AUPrediction()
    msg.window_start_us, msg.window_end_us = 0, 33_000
    msg.au_codes = np.asarray(AU_CODES, np.uint8)
    msg.state = "rest"
    state.add(msg)
    text = render(msg, "/x/au", state)
    assert "no movement" in text and "1. AU2" not in text and "AU events: 0" in text
    for au, k in (("AU12", 5), ("AU26", 9)):
        e = AUEvent()
        e.au, e.confidence, e.au_codes = au, 0.875, np.asarray(AU_CODES, np.uint8)
        e.onset_us, e.apex_us, e.offset_us = 1_000_000, 1_150_000, 1_330_000
        e.top3 = np.asarray([k, 0, 1], np.uint8)
        state.add_event(e)
    msg.state = "no_face"
    text = render(msg, "/x/au", state)
    assert "no face: no prediction" in text and "AU events: 2 (newest first)" in text
    assert text.index("AU26  0.88  apex 1.150 s  330 ms  top-3 AU26, AU2, AU4") < text.index("AU12  0.88")
    assert events_topic_for("/ns/inference/au") == "/ns/inference/au_events" and events_topic_for("/p") is None


def test_commands_are_registered_and_light_to_import():
    from microexp.bench.cli import BENCHES
    from microexp.cli import COMMANDS

    assert COMMANDS["infer"][0] == "microexp.ros.commands.infer"
    assert COMMANDS["watch"][0] == "microexp.ros.commands.watch"
    assert BENCHES["latency"] == "microexp.bench.latency"
    code = (
        "import sys; import microexp.ros.commands.infer, microexp.ros.commands.watch, microexp.bench.latency,"
        " microexp.infer;"
        "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
