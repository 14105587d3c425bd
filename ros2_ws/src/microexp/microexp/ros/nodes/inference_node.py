"""Inference node: live Action Unit predictions of the SNN from an event stream.

Subscribes to an EventPacket topic (``events_topic``; any encoding of :mod:`microexp.events.codecs`), to an
image topic for face detection (``frames_topic``: DAVIS346 APS or webcam; optional) and to the recorder's
segment markers (``segments_topic``). Publishes ``~/au`` (microexp_msgs/AUPrediction) for every 33 ms window,
``~/au_events`` (microexp_msgs/AUEvent) for every spotted movement, and ``~/diagnostics``
(diagnostic_msgs/DiagnosticArray) at 1 Hz; ``~/take_status`` (microexp_msgs/TakeStatus) answers ready once the
model is loaded and the live path and the face detector are warmed up (the demo's protocol waits for it).

Spotting (``mode: spot``, :mod:`microexp.infer.spotting`): a window in rest says ``state: rest`` on ``~/au``
and names no AU; a spotted movement runs the SNN from a fresh state at its onset (``state: movement``), and once
the training window around its peak has passed, the model's verdict over that window is published on
``~/au_events``. ``mode: continuous`` runs the SNN on every window until a reset, as a running mean. Windows
without a face (face detection on, no face found) say ``state: no_face`` and are not predictions; the node logs
one line when the face is lost and when it is found again, and its diagnostics say so.

The live path is :class:`microexp.infer.live.LiveRunner` (no ROS): decoding, binning, the bounded drop-oldest
queue of windows, the worker thread that infers them (skipping windows older than ``max_lag_ms``), the clock
estimate and the counters. This node feeds it the packets it takes, publishes what it hands back and reports
its counters; face detection runs on a thread of its own
(:class:`~microexp.infer.face.FaceDetectorThread`), fed with the newest image by the image callback, so
inference never blocks the event subscription. Intake (``intake``): by default a reader thread takes every
waiting packet each ``poll_ms`` from the node's event subscription, which sits in a callback group that
executors leave alone (``ros2 node info`` lists it under this node): rclpy's executor costs far more Python
per packet (holding the GIL, so also slowing the worker) than the reader's take. ``intake: executor`` uses an
ordinary subscription callback. QoS (``qos: auto``): the event and image subscriptions are made once their
topic has a publisher, reliable when every publisher is (a replay, the synthetic rig), best effort otherwise
(drivers).

Time: window bounds are sensor µs. ``header.stamp`` of ``~/au`` is the window end mapped to ROS time by the
runner's clock estimate once it is locked; before that, the ROS arrival time of the packet that closed the
window. ``latency_ms`` is the time from the arrival of that packet (its DDS reception time,
``received_timestamp`` of the message info) to the publish call.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Image

from event_camera_msgs.msg import EventPacket
from microexp.aus import AU_CODES, AU_LABELS
from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.events.stream import Packet
from microexp.infer.live import LiveRunner, warm_up
from microexp.infer.pipeline import StreamingAUPipeline
from microexp.ros.intake import Intake, publishers_qos
from microexp.ros.main import run_node
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.qos import RELIABLE_QOS, SENSOR_QOS, qos_named
from microexp_msgs.msg import AUEvent, AUPrediction, SegmentMarker
from microexp_msgs.srv import TakeStatus

PARAMS = (
    Param(
        "model",
        "",
        "SNN checkpoint (microexp format); empty = the default model "
        "($MICROEXP_MODELS_DIR or models/)/au_snn_default.pt",
    ),
    Param("device", "auto", "torch device: auto = cuda when available, else cpu", choices=("auto", "cuda", "cpu")),
    Param(
        "noise_filter_us",
        -1,
        "background-activity filter before binning (events.filters): an event counts when a "
        "neighbouring pixel fired within this many µs; -1 = as the model's training data (its checkpoint), 0 = off",
        min=-1,
        max=1_000_000,
        unit="µs",
    ),
    Param(
        "cuda_graph",
        True,
        "on CUDA, replay each SNN step as a captured CUDA graph (eager steps, with a warning, when the capture fails)",
    ),
    Param(
        "torch_threads",
        1,
        "CPU threads torch may use (0 = torch's default); 1 keeps a window's few small ops "
        "on one core, so that none of them waits for a second core on a busy machine",
        min=0,
        max=256,
    ),
    Param(
        "gil_switch_ms",
        0.5,
        "Python's thread switch interval for this process (sys.setswitchinterval; "
        "Python's default 5 ms makes the inference worker wait behind the packet reader after every torch "
        "op; 0 = leave it)",
        min=0.0,
        max=100.0,
        unit="ms",
    ),
    Param("events_topic", "/evk4/events", "EventPacket topic to run on (encodings evt3, libcaer, libcaer_cmp)"),
    Param("frames_topic", "", "sensor_msgs/Image topic for face detection (APS or webcam); empty = no detection"),
    Param("sensor", "evk4", "name of the event sensor, copied into AUPrediction.sensor"),
    Param(
        "qos",
        "auto",
        "QoS of the event and image subscriptions: auto = as their publishers offer (reliable when "
        "every publisher is; made once one appears), sensor (best effort) or reliable",
        choices=("auto", "sensor", "reliable"),
    ),
    Param("slice_us", 33000, "window length (the paper's 33 ms)", min=1000, max=1_000_000, unit="µs"),
    Param(
        "roi",
        "",
        "fixed crop x,y,width,height in event pixels, used without face detection or while the "
        "face is lost (empty = the whole sensor)",
    ),
    Param(
        "face_rate_hz",
        5.0,
        "face detections per second at most (0 = no detection, fixed ROI only)",
        min=0.0,
        max=120.0,
        unit="Hz",
    ),
    Param("face_lost_after", 3, "consecutive detections without a face after which the face is lost", min=1, max=1000),
    Param(
        "face_smoothing",
        0.5,
        "weight of the newest face box in its exponential smoothing (1 = no smoothing)",
        min=0.01,
        max=1.0,
    ),
    Param("face_margin", 1.2, "side of the square crop / longer side of the face box", min=0.5, max=4.0),
    Param(
        "face_box",
        "model",
        "face box rule: mtcnn (MTCNN's box, the paper's), landmarks (placed by MTCNN's five "
        "landmarks, vision.face.landmark_box) or model = as the model's training data (its checkpoint)",
        choices=("model", "mtcnn", "landmarks"),
    ),
    Param("face_min_probability", 0.9, "MTCNN detections less probable than this are ignored", min=0.0, max=1.0),
    Param(
        "face_stale_s",
        2.0,
        "the face is lost when no detection came for this long (0 = never)",
        min=0.0,
        max=3600.0,
        unit="s",
    ),
    Param(
        "frame_to_events",
        [1.0, 1.0, 0.0, 0.0],
        "face box from image to event pixels [sx, sy, ox, oy]: "
        "x = sx*u + ox, y = sy*v + oy (identity for the DAVIS346's own APS frames)",
    ),
    Param("horizon", 10, "windows averaged by the smoothed decision", min=1, max=1000),
    Param(
        "temperature",
        0.0,
        "softmax temperature of the probabilities; 0 = the model's calibrated one (stored by "
        "`microexp export`), or 1 (plain softmax) when it has none",
        min=0.0,
        max=100.0,
    ),
    Param(
        "gap_ms",
        200.0,
        "a pause in the events longer than this (sensor time, or without packets) ends the "
        "clip: the open window is published and the SNN reset",
        min=1.0,
        max=60000.0,
        unit="ms",
    ),
    Param(
        "chunk_us",
        8000,
        "events are binned in batches spanning at most this much sensor time",
        min=100,
        max=1_000_000,
        unit="µs",
    ),
    Param("queue_size", 4, "windows waiting for inference at most; when full the oldest is skipped", min=1, max=1000),
    Param(
        "max_lag_ms",
        100.0,
        "a window older than this when inference could start is skipped",
        min=1.0,
        max=60000.0,
        unit="ms",
    ),
    Param(
        "intake",
        "poll",
        "how event packets are taken: poll = a reader thread takes every waiting packet each "
        "poll_ms (far less Python per packet than executor callbacks); executor = a subscription "
        "callback",
        choices=("poll", "executor"),
    ),
    Param("poll_ms", 1.0, "reader thread period (intake=poll)", min=0.1, max=100.0, unit="ms"),
    Param(
        "segments_topic", "/recorder/segments", "SegmentMarker topic; start/stop/discard reset the SNN (empty = none)"
    ),
    Param("diagnostics_period_s", 1.0, "period of ~/diagnostics", min=0.05, max=60.0, unit="s"),
    Param(
        "mode",
        "spot",
        "spot = spot movements, run the SNN from each movement's onset and publish a verdict per movement on "
        "~/au_events (rest windows name no AU); continuous = the SNN's running mean on every window",
        choices=("spot", "continuous"),
    ),
    Param(
        "spot_threshold",
        5,
        "spotting: filtered events in the face box that make a window active, at least",
        min=1,
        max=10_000_000,
    ),
    Param(
        "spot_ratio",
        2.0,
        "spotting: an active window also has this many times the rest ceiling (a high quantile of the recent "
        "activity outside movements)",
        min=0.0,
        max=1000.0,
    ),
    Param(
        "spot_min_events",
        45,
        "spotting: filtered events that confirm a movement (fewer: noise such as head sway)",
        min=1,
        max=100_000_000,
    ),
    Param(
        "spot_hold",
        8,
        "spotting: quiet windows that end a movement (bridges the still apex between onset and offset)",
        min=1,
        max=1000,
    ),
    Param(
        "spot_refractory",
        45,
        "spotting: windows after a movement during which activity must reach a fraction of that movement's to count",
        min=0,
        max=100_000,
    ),
    Param(
        "activity_filter_us",
        20000,
        "spotting: background-activity filter of the activity signal (neighbour support within this many µs)",
        min=1,
        max=1_000_000,
        unit="µs",
    ),
)

SEGMENT_BOUNDARIES = ("start", "stop", "discard")


class InferenceNode(MicroexpNode):
    """See the module docstring; parameters in :data:`PARAMS` and config/inference_node.yaml."""

    def __init__(self, name: str = "inference", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, PARAMS)
        self._configure_torch()
        self._load_model()
        from microexp.infer.face import BoxMap, FaceTracker
        from microexp.vision.crop import parse_roi

        self.roi = parse_roi(self.p["roi"])
        self.box_map = BoxMap.from_list(self.p["frame_to_events"])
        self.face: Optional[FaceTracker] = None
        self.detector_thread = None
        if self.p["frames_topic"] and self.p["face_rate_hz"] > 0:
            self.face = FaceTracker(
                self.p["face_smoothing"],
                self.p["face_lost_after"],
                self.box_map,
                self.p["face_margin"],
                self.p["face_stale_s"],
            )

        self.runner = LiveRunner(
            self._make_pipeline,
            self._publish,
            queue_size=self.p["queue_size"],
            max_lag_ms=self.p["max_lag_ms"],
            gap_ms=self.p["gap_ms"],
            name=self.p["events_topic"],
            log=self._log,
            ros_now_ns=lambda: self.get_clock().now().nanoseconds,
            on_verdict=self._publish_event,
        )
        self.slices = int(self.meta.get("extra", {}).get("input", {}).get("slices", 0) or 16)
        self.spotting = None
        if self.p["mode"] == "spot":
            from microexp.infer.spotting import SpotterConfig

            self.spotting = SpotterConfig(
                threshold=self.p["spot_threshold"],
                ratio=self.p["spot_ratio"],
                min_events=self.p["spot_min_events"],
                hold=self.p["spot_hold"],
                refractory=self.p["spot_refractory"],
                window=self.slices,
            )
        self._face_state: Optional[bool] = None  # last logged face state
        self._prev_skipped = 0
        self._image_size_warned = False
        self._stop = threading.Event()  # the reader thread's

        self.pub = self.create_publisher(AUPrediction, "~/au", RELIABLE_QOS)
        self.events_pub = self.create_publisher(AUEvent, "~/au_events", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "~/diagnostics", RELIABLE_QOS)
        self._events_group = MutuallyExclusiveCallbackGroup()
        other_group = self._other_group = MutuallyExclusiveCallbackGroup()
        self.intake = None
        if self.p["intake"] != "executor":
            self.intake = Intake(
                self,
                lambda _topic, msg, info: self._on_events(msg, info),
                self.p["poll_ms"] / 1000.0,
                raw=False,
                name="event_intake",
                on_idle=self.runner.idle,
            )
        self.events_sub = None
        self.frames_sub = None
        self.events_qos = self.frames_qos = ""
        if self.p["intake"] == "executor":
            idle_period = max(0.005, self.p["gap_ms"] / 2000.0)
            self.idle_timer = self.create_timer(idle_period, self.runner.idle, callback_group=self._events_group)
        if not self._subscribe():
            self._subscribe_timer = self.create_timer(0.2, self._subscribe, callback_group=other_group)
        if self.p["segments_topic"]:
            self.segments_sub = self.create_subscription(
                SegmentMarker, self.p["segments_topic"], self._on_segment, RELIABLE_QOS, callback_group=other_group
            )
        self.diag_timer = self.create_timer(
            self.p["diagnostics_period_s"], self.publish_diagnostics, callback_group=other_group
        )
        error = warm_up(self.model, self.device, self.p["slice_us"], self.temperature, self.noise_filter_us)
        if error:
            self.get_logger().warning(f"warm-up of the live path failed: {error}")
        self.runner.start()
        if self.intake is not None:
            self.intake.start()
        if self.face is not None:
            self._start_face_detection()  # the detector is built and warmed up before the node says ready
        self.ready = True
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv, callback_group=other_group)
        self.get_logger().info(
            f"ready: model {self.model_id} on {self.device} (temperature {self.temperature:.3g}); "
            f"events {self.resolve_topic_name(self.p['events_topic'])}; "
            f"face {'from ' + self.p['frames_topic'] if self.face is not None else 'off (fixed ROI)'}; "
            f"mode {self.p['mode']}"
        )

    def _log(self, level: str, message: str, throttle_s: float = 0.0) -> None:
        log = getattr(self.get_logger(), level)
        if throttle_s > 0:
            log(message, throttle_duration_sec=throttle_s)
        else:
            log(message)

    def _configure_torch(self) -> None:
        """torch's threads, denormals and the GIL switch interval, from the parameters."""
        # torch's OpenMP threads otherwise spin-wait after each parallel region: on a few shared cores they take
        # the CPU from the event intake and from each other. OpenMP reads it when torch first loads, so it helps
        # where this node imports torch first (microexp infer, the launch file); a process that imported torch
        # before should set it itself.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if self.p["torch_threads"] > 0:
            torch.set_num_threads(self.p["torch_threads"])
        torch.set_flush_denormal(
            True
        )  # decaying membranes of silent neurons would otherwise go subnormal (slow on x86)
        if self.p["gil_switch_ms"] > 0:
            sys.setswitchinterval(self.p["gil_switch_ms"] / 1000.0)

    def _load_model(self) -> None:
        """The checkpoint (``model``, else the default) on ``device``, and what it says of its input."""
        from microexp.infer import default_model_path, load_au_model
        from microexp.models.device import resolve_device

        self.device = resolve_device(self.p["device"])
        model_path = self.p["model"] or str(default_model_path())
        if not self.p["model"] and not default_model_path().exists():
            raise MicroexpError(
                f"{self.get_name()}: parameter model is empty and the default model {model_path} "
                "does not exist yet: give a checkpoint (microexp infer --model FILE)"
            )
        self.model, self.meta, self.model_id = load_au_model(model_path, self.device)
        self.temperature = float(self.p["temperature"] or self.meta.get("extra", {}).get("temperature") or 1.0)
        trained_filter = int(self.meta.get("extra", {}).get("input", {}).get("noise_filter_us", 0) or 0)
        self.noise_filter_us = trained_filter if self.p["noise_filter_us"] < 0 else int(self.p["noise_filter_us"])
        trained_box = str(self.meta.get("extra", {}).get("input", {}).get("face_box", "mtcnn") or "mtcnn")
        self.face_box = trained_box if self.p["face_box"] == "model" else self.p["face_box"]

    def _take_status_srv(self, req, res):
        """Ready once the model is loaded and warmed up (a protocol waits for it before recording)."""
        res.ready, res.idle = bool(self.ready), True
        res.topics, res.counts = [self.pub.topic_name], [int(self.published)]
        res.message = "" if self.ready else "loading"
        return res

    def _qos_for(self, topic: str):
        """The subscription QoS of ``topic`` (qos parameter; auto: as its publishers offer, None while it has none)."""
        if self.p["qos"] != "auto":
            return qos_named(self.p["qos"]), self.p["qos"]
        qos, _ = publishers_qos(self, self.resolve_topic_name(topic), RELIABLE_QOS, SENSOR_QOS)
        return qos, ("" if qos is None else "reliable" if qos is RELIABLE_QOS else "sensor")

    def _subscribe(self) -> bool:
        """Make the event (and image) subscriptions whose QoS is known; True when all are made."""
        if self.events_sub is None:
            qos, name = self._qos_for(self.p["events_topic"])
            if qos is not None:
                if self.p["intake"] == "executor":
                    self.events_sub = self.create_subscription(
                        EventPacket, self.p["events_topic"], self._on_events, qos, callback_group=self._events_group
                    )
                else:  # taken by the intake's thread only
                    self.events_sub = self.intake.subscribe(self.p["events_topic"], EventPacket, qos)
                self.events_qos = name
                self.get_logger().info(f"subscribed to {self.events_sub.topic_name} ({name})")
        if self.face is not None and self.frames_sub is None:
            qos, name = self._qos_for(self.p["frames_topic"])
            if qos is not None:
                self.frames_sub = self.create_subscription(
                    Image, self.p["frames_topic"], self._on_frame, qos, callback_group=self._other_group
                )
                self.frames_qos = name
        done = self.events_sub is not None and (self.face is None or self.frames_sub is not None)
        timer = getattr(self, "_subscribe_timer", None)
        if done and timer is not None:
            timer.cancel()
        return done

    # ------------------------------------------------------------------------------------------- set-up
    def _make_pipeline(self, width: int, height: int):
        """The pipeline of a new stream of ``width`` x ``height`` events (the runner calls it)."""
        pipeline = StreamingAUPipeline(
            self.model,
            width,
            height,
            slice_us=self.p["slice_us"],
            roi=self.roi,
            device=self.device,
            horizon=self.p["horizon"],
            gap_us=int(self.p["gap_ms"] * 1000),
            temperature=self.temperature,
            face=self.face,
            chunk_us=self.p["chunk_us"],
            cuda_graph=self.p["cuda_graph"],
            noise_filter_us=self.noise_filter_us,
            spotting=self.spotting,
            activity_filter_us=self.p["activity_filter_us"],
        )
        if pipeline.graph_error:
            self.get_logger().warning(f"CUDA graph capture failed, eager SNN steps: {pipeline.graph_error}")
        return pipeline

    def _start_face_detection(self) -> None:
        from microexp.infer.face import FaceDetectorThread
        from microexp.ros.images import from_msg
        from microexp.vision.face import MtcnnDetector
        from microexp.vision.image import to_rgb

        detector = MtcnnDetector(self.device, self.p["face_min_probability"], box=self.face_box)
        try:  # build the networks and run them once now, so that the first frames find the face in time
            detector(np.full((260, 346, 3), 128, dtype=np.uint8))
        except Exception as exc:  # noqa: BLE001 - detection reports its own errors per frame later
            self.get_logger().warning(f"warm-up of the face detector failed: {type(exc).__name__}: {exc}")

        def detect(msg: Image):
            image = from_msg(msg)
            if (
                not self._image_size_warned
                and self.box_map.is_identity
                and self.pipeline is not None
                and (msg.width, msg.height) != (self.pipeline.width, self.pipeline.height)
            ):
                self._image_size_warned = True
                self.get_logger().warning(
                    f"images are {msg.width}x{msg.height} but events {self.pipeline.width}x{self.pipeline.height} "
                    "and frame_to_events is the identity: set it to map face boxes across the sensors"
                )
            return detector(to_rgb(image, msg.encoding))

        self.detector_thread = FaceDetectorThread(
            detect, self.face, self.p["face_rate_hz"], on_error=lambda m: self.get_logger().warning(m)
        )
        self.detector_thread.start()

    # ---------------------------------------------------------------------------------------- callbacks
    def _on_events(self, msg: EventPacket, info: dict) -> None:
        """One packet to the runner, with its DDS reception time (``received_timestamp`` of the message info;
        rclpy passes the info to subscription callbacks too)."""
        received = int(info.get("received_timestamp", 0)) if info else 0
        self.runner.feed(Packet.from_msg(msg), received)

    def _on_frame(self, msg: Image) -> None:
        if self.detector_thread is not None:
            self.detector_thread.submit(msg)

    def _on_segment(self, msg: SegmentMarker) -> None:
        if msg.event in SEGMENT_BOUNDARIES:
            self.runner.segment_boundary()

    def _publish(self, r, stamp_ns: int, frame_id: str) -> None:
        """One window's result as an AUPrediction (the runner's worker thread calls it)."""
        msg = AUPrediction()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = frame_id
        msg.window_start_us = int(r.t0)
        msg.window_end_us = int(r.t1)
        msg.sensor = self.p["sensor"]
        msg.au_codes = np.asarray(AU_CODES, dtype=np.uint8)
        msg.probabilities = r.probabilities
        msg.top3 = np.asarray(r.top3, dtype=np.uint8)
        msg.smoothed_probabilities = r.smoothed
        msg.smoothed_top1 = r.smoothed_top1
        msg.smoothed_windows = min(int(r.smoothed_windows), 65535)
        msg.model_id = self.model_id
        msg.events = min(int(r.events), 2**32 - 1)
        msg.face_found = bool(r.face_found)
        msg.crop_box = np.asarray(r.box, dtype=np.float32)
        msg.state = r.state
        msg.latency_ms = float((time.monotonic_ns() - r.arrival_ns) / 1e6)
        if self.face is not None and (r.state != "no_face") != self._face_state:
            self._face_state = r.state != "no_face"
            self.get_logger().info("face found" if self._face_state else "no face: windows are not predictions")
        before = time.monotonic_ns()
        self.pub.publish(msg)
        after = time.monotonic_ns()
        self.latency.add("publish", (after - before) / 1e6)
        self.latency.add("total", (after - r.arrival_ns) / 1e6)

    def _publish_event(self, v, stamp_ns: int, frame_id: str) -> None:
        """One movement verdict as an AUEvent (the runner's worker thread calls it)."""
        msg = AUEvent()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = frame_id
        msg.sensor = self.p["sensor"]
        msg.onset_us, msg.apex_us, msg.offset_us = int(v.onset_us), int(v.apex_us), int(v.offset_us)
        msg.decided_us = int(v.decided_us)
        msg.decided_us = int(v.decided_us)
        msg.au = v.au
        msg.au_index = int(v.top3[0])
        msg.confidence = float(v.confidence)
        msg.top3 = np.asarray(v.top3, dtype=np.uint8)
        msg.top3_probabilities = np.asarray([v.probabilities[i] for i in v.top3], dtype=np.float32)
        msg.au_codes = np.asarray(AU_CODES, dtype=np.uint8)
        msg.probabilities = v.probabilities
        msg.windows = min(int(v.windows), 65535)
        msg.events = min(int(v.events), 2**32 - 1)
        msg.closed = v.forced
        msg.model_id = self.model_id
        msg.latency_ms = float((time.monotonic_ns() - v.arrival_ns) / 1e6)
        self.events_pub.publish(msg)
        self.get_logger().info(
            f"AU event {v.au} ({v.confidence:.2f}; top-3 {', '.join(AU_LABELS[i] for i in v.top3)}) at {v.apex_us} µs"
        )

    # -------------------------------------------------------------------------------------- diagnostics
    @property
    def pipeline(self):
        """The pipeline of the current stream (None before the first packet)."""
        return self.runner.pipeline

    @property
    def latency(self):
        """Latency statistics of the intake (the runner's) and of publishing."""
        return self.runner.latency

    @latency.setter
    def latency(self, stats) -> None:
        self.runner.latency = stats

    @property
    def published(self) -> int:
        """AUPredictions published so far."""
        return self.runner.published

    def counters(self) -> dict:
        """Everything counted so far (stream, queue, pipeline), one flat dict."""
        return self.runner.counters()

    def latency_summary(self) -> dict:
        """p50/p99 (ms) per stage: the pipeline's (decode, bin, queue, crop, snn, post, ready), the runner's
        (intake: a packet's reception by DDS to the end of its decoding and binning), the node's (publish;
        total = reception of the closing packet to publish) and face detection (detect)."""
        out = self.runner.latency_summary()
        if self.detector_thread is not None:
            out.update(self.detector_thread.latency.summary())
        return out

    def publish_diagnostics(self) -> None:
        counts = self.counters()
        latency = self.latency_summary()
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: AU inference"
        status.hardware_id = self.p["sensor"]
        problems = []
        skipped = counts.get("skipped", 0)
        if skipped > self._prev_skipped:
            problems.append(f"{skipped - self._prev_skipped} windows skipped")
        self._prev_skipped = skipped
        face_state = "off"
        if self.face is not None:
            face_state = "found" if self.face.found else "lost"
            if face_state == "lost":
                problems.append("no face: windows are not predictions" if self.spotting else "no face (fixed ROI)")
        if self.pipeline is None:
            problems.append(f"no events yet on {self.p['events_topic']}")
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        total = latency.get("total")
        status.message = (
            "; ".join(problems)
            if problems
            else (f"{counts.get('windows', 0)} windows, p99 {total['p99']:.2f} ms" if total else "running")
        )
        values = {
            "model_id": self.model_id,
            "device": self.device,
            "events_topic": self.p["events_topic"],
            "face": face_state,
        }
        values.update({k: v for k, v in counts.items()})
        if self.face is not None:
            values.update({f"face.{k}": v for k, v in self.face.state().items() if k != "found"})
        for stage, s in latency.items():
            values[f"latency.{stage}.p50_ms"] = s["p50"]
            values[f"latency.{stage}.p99_ms"] = s["p99"]
        status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)

    def destroy_node(self):
        self._stop.set()
        if self.intake is not None:
            self.intake.stop()
        if self.detector_thread is not None:
            self.detector_thread.stop()
        self.runner.stop()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(InferenceNode, args)
