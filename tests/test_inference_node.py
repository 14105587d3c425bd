"""The inference node (microexp.ros.nodes.inference_node) over real DDS with a random untrained SNN checkpoint:
published probabilities equal the offline computation, faults are counted and survived, start errors; its
config file and launch/inference.launch.py checked statically."""

from __future__ import annotations

import ast
import json
import os
import py_compile
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.events import DAVIS, blob_events
from helpers.infer import assert_same_ranking, offline, random_snn
from helpers.paths import PKG, REPO
from helpers.wait import wait_until

from microexp.aus import AU_CODES
from microexp.config import yaml_text
from microexp.errors import MicroexpError
from microexp.models import C3DNet, CheckpointArchitectureError, CheckpointNotFoundError, CNN3DConfig, save_checkpoint
from microexp.vision.crop import parse_roi

# --------------------------------------------------------------------------------------------- ROS graph
rclpy = pytest.importorskip("rclpy")

PUBLISHER = textwrap.dedent('''
    """Test publisher (its own DDS process): EventPackets (evt3, 1 ms each, paced in real time) and blank frames."""
    import json, sys, time
    import numpy as np
    import rclpy
    from event_camera_msgs.msg import EventPacket
    from sensor_msgs.msg import Image
    from microexp.events.codecs import make_encoder
    from microexp.ros.qos import RELIABLE_QOS
    from microexp.vision.image import fill_image
    from rclpy.duration import Duration

    cfg = json.loads(sys.argv[1])
    sys.path.insert(0, cfg["tests"])
    from helpers.wait import wait_until
    events = np.load(cfg["events"])
    w, h = cfg["width"], cfg["height"]
    enc = make_encoder("evt3", w, h)
    t0 = int(events["t"][0])
    k = (events["t"] - t0) // 1000
    cuts = np.flatnonzero(np.diff(k)) + 1
    packets = np.split(events, cuts)
    rclpy.init()
    node = rclpy.create_node("test_event_publisher")
    pub = node.create_publisher(EventPacket, cfg["topic"], RELIABLE_QOS)
    img_pub = node.create_publisher(Image, cfg["frames_topic"], RELIABLE_QOS) if cfg.get("frames_topic") else None
    pubs = [p for p in (pub, img_pub) if p is not None]
    wait_until(lambda: all(p.get_subscription_count() for p in pubs), 30, "the node did not subscribe")
    # not a wait before an assert: discovery is not symmetric and the node matching this process back cannot be
    # seen from here; the same settle as the sensor nodes' own wait_for_subscribers (ros/publishing.py)
    time.sleep(0.5)
    start = time.monotonic()
    next_frame = 0.0
    blank = np.full((h, w), 128, np.uint8)
    for seq, packet in enumerate(packets):
        rel = (int(packet["t"][0]) - t0) / 1e6
        delay = start + rel - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # stimulus: paces the stream in real time as a camera does; not a wait
        payload, _ = enc.encode(packet)
        if seq in cfg.get("drop", []):
            continue  # lost in transport: the seq number is used up
        msg = EventPacket()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = "test_camera"
        msg.width, msg.height, msg.seq, msg.time_base, msg.encoding = w, h, seq, 0, "evt3"
        msg.events = payload
        pub.publish(msg)
        if img_pub is not None and rel >= next_frame:
            img = fill_image(Image(), blank, "mono8")
            img.header.stamp = msg.header.stamp
            img_pub.publish(img)
            next_frame = rel + 0.05
    # a publisher destroyed early takes what its reliable subscribers have not fetched yet with it
    for p in pubs:
        assert p.wait_for_all_acked(Duration(seconds=30)), "the node did not take every message"
    node.destroy_node()
    rclpy.shutdown()
''')


def start_publisher(tmp_path, events, **cfg):
    np.save(tmp_path / "sent_events.npy", events)
    script = tmp_path / "publisher.py"
    script.write_text(PUBLISHER)
    cfg = {
        "events": str(tmp_path / "sent_events.npy"),
        "width": DAVIS[0],
        "height": DAVIS[1],
        "tests": str(Path(__file__).parent),
        **cfg,
    }
    return subprocess.Popen([sys.executable, str(script), json.dumps(cfg)])


def node_params(model, **values):
    from microexp.ros.compose import overrides

    return overrides("inference", None, model=str(model), device="cpu", torch_threads=1, qos="reliable", **values)


class Collector:
    """Subscribes (reliable) to a node's ~/au and ~/diagnostics."""

    def __init__(self, runner, ns: str):
        from diagnostic_msgs.msg import DiagnosticArray

        from microexp.ros.qos import RELIABLE_QOS
        from microexp_msgs.msg import AUPrediction

        self.au, self.diag = [], []
        self.node = runner.add(rclpy.create_node("test_collector"))
        self.node.create_subscription(AUPrediction, f"{ns}/au", lambda m: self.au.append(m), RELIABLE_QOS)
        self.node.create_subscription(DiagnosticArray, f"{ns}/diagnostics", lambda m: self.diag.append(m), RELIABLE_QOS)

    def wait(self, n: int, timeout: float = 60.0):
        """The predictions so far once there are ``n`` (fewer after ``timeout``: the caller's assert says so)."""
        try:
            wait_until(lambda: len(self.au) >= n, timeout, period_s=0.05)
        except AssertionError:
            pass
        return self.au

    def diagnostics(self) -> dict:
        status = self.diag[-1].status[0]
        return {kv.key: kv.value for kv in status.values} | {"_level": status.level, "_message": status.message}


@pytest.mark.ros
@pytest.mark.slow
def test_graph_published_probabilities_equal_the_offline_model_on_the_same_windows(tmp_path, random_checkpoint):
    """Over real DDS, with the random untrained SNN checkpoint (no trained model exists yet): a publisher process
    sends EVT3 EventPackets of a synthetic moving blob; the node's AUPredictions equal (1e-5) the offline
    computation on the same events: Eq. (1) frames of the whole recording, the same crop, multi-step inference."""
    from microexp.ros.nodes.inference_node import InferenceNode
    from microexp.ros.runner import Runner

    events = blob_events(*DAVIS, 500_000, 0.6e6, seed=5)
    roi = "40,20,260,220"
    runner = Runner("single")
    try:
        node = runner.add(
            InferenceNode(
                parameter_overrides=node_params(
                    random_checkpoint,
                    events_topic="/test_graph/events",
                    sensor="davis346",
                    roi=roi,
                    horizon=3,
                    queue_size=1000,
                    max_lag_ms=60000.0,
                    mode="continuous",  # every window a prediction: comparable window by window (spotting: test_evaluate)
                )
            )
        )
        collector = Collector(runner, "/inference")
        runner.start()
        frames, expected = offline(random_snn(), events, *DAVIS, parse_roi(roi))
        publisher = start_publisher(tmp_path, events, topic="/test_graph/events")
        got = collector.wait(frames.shape[0])
        assert publisher.wait(timeout=60) == 0
        # a diagnostics message after the last window
        diag = wait_until(
            lambda: collector.diag and int((d := collector.diagnostics())["windows"]) >= frames.shape[0] and d,
            30,
            "no diagnostics message counted the last window",
        )
        counters = node.counters()
    finally:
        runner.close()
    n = frames.shape[0]
    assert len(got) == n and n >= 15
    t_start = int(events["t"][0])
    assert [m.window_start_us for m in got] == [t_start + 33_000 * k for k in range(n)]
    assert all(m.window_end_us - m.window_start_us == 33_000 for m in got)
    probs = np.stack([np.asarray(m.probabilities) for m in got])
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-5)
    assert_same_ranking([tuple(m.top3) for m in got], expected)
    for k, m in enumerate(got):
        np.testing.assert_allclose(m.smoothed_probabilities, expected[max(0, k - 2) : k + 1].mean(0), atol=1e-5)
        assert m.smoothed_windows == min(k + 1, 3)
    assert [m.events for m in got] == [int(f.sum()) for f in frames]
    m = got[0]
    assert list(m.au_codes) == list(AU_CODES) and m.sensor == "davis346" and not m.face_found
    assert m.model_id.startswith("random_untrained_snn.pt@") and m.header.frame_id == "test_camera"
    assert all(msg.header.stamp.sec > 0 and msg.latency_ms > 0 for msg in got)
    assert counters["skipped"] == 0 and counters["resets"] == 1 and counters["seq_gaps"] == 0
    assert counters["published"] == n and counters["packets"] == len(np.unique((events["t"] - t_start) // 1000))
    assert diag["windows"] == str(n) and diag["skipped"] == "0" and diag["face"] == "off"
    assert float(diag["latency.total.p99_ms"]) > 0 and "latency.snn.p50_ms" in diag


@pytest.mark.ros
@pytest.mark.slow
def test_graph_faults_are_handled_counted_and_the_node_keeps_running(tmp_path, random_checkpoint):
    """Over real DDS (intake through an executor callback this time): dropped packets (a seq gap), a short pause
    (empty windows), a long pause (stream gap), a segment marker, and blank frames in which MTCNN finds no face;
    the node counts each, resets where it must, falls back to the fixed ROI and keeps publishing."""
    from microexp.ros.nodes.inference_node import InferenceNode
    from microexp.ros.runner import Runner

    pauses = ((200_000, 100_000), (450_000, 450_000))  # 3 empty windows; then a 450 ms gap
    events = blob_events(*DAVIS, 1_100_000, 0.3e6, seed=6, pauses=pauses)
    runner = Runner("single")
    try:
        node = runner.add(
            InferenceNode(
                parameter_overrides=node_params(
                    random_checkpoint,
                    events_topic="/test_faults/events",
                    frames_topic="/test_faults/image_raw",
                    face_rate_hz=5.0,
                    roi="40,20,260,220",
                    intake="executor",
                    gap_ms=200.0,
                    diagnostics_period_s=0.5,
                    queue_size=1000,
                    max_lag_ms=60000.0,
                    mode="continuous",  # segment markers reset the running mean in this mode
                )
            )
        )
        collector = Collector(runner, "/inference")
        runner.start()
        publisher = start_publisher(
            tmp_path, events, topic="/test_faults/events", frames_topic="/test_faults/image_raw", drop=[120, 121, 122]
        )
        # a recording segment starts while the stream runs: the SNN resets at the next window
        from microexp.ros.qos import LATCHED_QOS
        from microexp_msgs.msg import SegmentMarker

        marker_pub = collector.node.create_publisher(SegmentMarker, "/recorder/segments", LATCHED_QOS)
        collector.wait(3)
        marker_pub.publish(SegmentMarker(event="start", segment_id=1, au="AU12"))
        assert publisher.wait(timeout=90) == 0
        t_end = int(events["t"][-1])

        def settled():  # the window past the last event arrived, and a diagnostics message counted it
            counters, got = node.counters(), list(collector.au)
            if not (got and got[-1].window_end_us > t_end and counters["windows"] == len(got) and collector.diag):
                return None
            diag = collector.diagnostics()
            return (counters, diag, got) if diag["windows"] == str(len(got)) else None

        counters, diag, got = wait_until(settled, 30, "the last window or its diagnostics never arrived")
    finally:
        runner.close()
    assert got and got[-1].window_end_us > t_end  # still publishing after every fault, up to the last event
    assert counters["seq_gaps"] == 1 and counters["packets_missing"] == 3
    assert counters["resets.seq_gap"] == 1
    assert counters["gaps"] == 1 and counters["resets.gap"] == 1
    assert counters["empty_windows"] >= 2
    assert counters["segment_markers"] == 1 and counters["resets.segment"] == 1
    assert counters["no_face_windows"] == counters["windows"] == len(got)
    assert not any(m.face_found for m in got)
    assert node.detector_thread.detections >= 1 and node.face.misses >= 1 and node.face.hits == 0
    from diagnostic_msgs.msg import DiagnosticStatus

    assert diag["face"] == "lost" and diag["_level"] == DiagnosticStatus.WARN and "no face" in diag["_message"]
    assert int(diag["seq_gaps"]) == 1 and int(diag["resets.gap"]) == 1


@pytest.mark.ros
def test_node_refuses_to_start_without_a_usable_model(tmp_path):
    from microexp.ros.nodes.inference_node import InferenceNode

    cnn = tmp_path / "cnn3d.pt"
    save_checkpoint(cnn, C3DNet(CNN3DConfig(widths=(2,) * 8, fc_hidden=4)))
    rclpy.init()
    try:
        with pytest.raises(CheckpointNotFoundError, match="no such checkpoint file"):
            InferenceNode(parameter_overrides=node_params(tmp_path / "absent.pt"))
        with pytest.raises(CheckpointArchitectureError, match="'cnn3d'"):
            InferenceNode(parameter_overrides=node_params(cnn))
        os.environ["MICROEXP_MODELS_DIR"] = str(tmp_path / "no_models_here")
        try:
            with pytest.raises(MicroexpError, match="default model .* does not exist"):
                InferenceNode(parameter_overrides=node_params(""))
        finally:
            del os.environ["MICROEXP_MODELS_DIR"]
    finally:
        rclpy.shutdown()


@pytest.mark.ros
def test_the_stop_ends_the_workers_before_the_publishers_go(random_checkpoint):
    """The stop order of microexp.ros.lifecycle: rclpy's context stays up while the node is destroyed, and the node
    ends the workers that publish results (windows, verdicts) and its intake before its publishers are destroyed,
    so no result is published to a destroyed publisher (a traceback at Ctrl-C in an earlier CI run)."""
    import types

    from microexp.ros import lifecycle
    from microexp.ros.nodes.inference_node import InferenceNode

    lifecycle.init()
    node = InferenceNode(parameter_overrides=node_params(random_checkpoint, events_topic="/test_ctrl_c/events"))
    try:
        r = types.SimpleNamespace(
            t0=0,
            t1=33_000,
            probabilities=np.full(21, 1 / 21, np.float32),
            top3=[0, 1, 2],
            smoothed=np.full(21, 1 / 21, np.float32),
            smoothed_top1=0,
            smoothed_windows=1,
            events=100,
            face_found=False,
            box=(0.0, 0.0, 1280.0, 720.0),  # the crop: the whole sensor
            state="movement",
            arrival_ns=time.monotonic_ns(),
        )
        node._publish(r, 1_000_000_000, "evk4")
        workers = [node.runner._worker, node.runner._verdict_worker, node.intake._thread]
        assert all(w is not None and w.is_alive() for w in workers)
        node.destroy_node()
        assert not any(w.is_alive() for w in workers), "a worker outlived its node"
        assert rclpy.ok(), "the context is shut down last, after the nodes"
    finally:
        lifecycle.shutdown()


# ---------------------------------------------------------------------------------------- files and CLI
def test_config_yaml_mirrors_the_node_params_exactly():
    from microexp.ros.nodes.inference_node import PARAMS

    text = (PKG / "config" / "inference_node.yaml").read_text()
    assert yaml.safe_load(text) == yaml.safe_load(yaml_text("inference", PARAMS))
    assert all(p.description for p in PARAMS)
    names = {p.name for p in PARAMS}
    assert {
        "model",
        "device",
        "events_topic",
        "frames_topic",
        "sensor",
        "slice_us",
        "roi",
        "face_rate_hz",
        "horizon",
        "gap_ms",
    } <= names


def test_launch_file_compiles_and_its_arguments_are_described_node_parameters(tmp_path):
    from microexp.ros.nodes.inference_node import PARAMS

    path = REPO / "launch" / "inference.launch.py"
    py_compile.compile(str(path), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    assigned = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    arguments = ast.literal_eval(assigned["ARGUMENTS"])
    params = {p.name: p for p in PARAMS}
    kinds = {str: "str", float: "float", int: "int"}
    for name, default, kind, description in arguments:
        assert description and len(description) > 10, name
        if kind is not None:  # a node parameter: same name, type and default as the node's spec
            assert name in params, name
            assert kind == kinds[type(params[name].default)], name
            assert yaml.safe_load(default or "''") == params[name].default, name
    assert {"params_file", "namespace", "log_level"} <= {a[0] for a in arguments}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node"]
    assert len(calls) == 1
    kw = {k.arg: k.value for k in calls[0].keywords}
    assert ast.literal_eval(kw["executable"]) == "inference_node" and "arguments" not in kw
    assert ast.literal_eval(kw["name"]) == "inference"
