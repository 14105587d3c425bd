"""Inference node: live Action Unit predictions of the SNN from an event stream.

Subscribes to an EventPacket topic (``events_topic``; any encoding of :mod:`microexp.events.codecs`), to an
image topic for face detection (``frames_topic``: DAVIS346 APS or webcam; optional) and to the recorder's
segment markers (``segments_topic``). Publishes ``~/au`` (microexp_msgs/AUPrediction) for every 33 ms window
and ``~/diagnostics`` (diagnostic_msgs/DiagnosticArray) at 1 Hz; ``~/take_status`` (microexp_msgs/TakeStatus)
answers ready once the model is loaded and warmed up (the demo's protocol waits for it).

Threads: event intake only decodes, bins (:meth:`StreamingAUPipeline.bin`) and enqueues completed windows into
a bounded drop-oldest queue; a worker thread crops, runs the SNN step and publishes; face detection runs on a
third thread (:class:`~microexp.infer.face.FaceDetectorThread`), fed with the newest image by the image
callback. Inference therefore never blocks the event subscription. A window that waits longer than
``max_lag_ms``, or is pushed out of the full queue, is skipped and counted (and the SNN is reset before the
next one). Intake (``intake``): by default a reader thread takes every waiting packet each ``poll_ms`` from the
node's event subscription, which sits in a callback group that executors leave alone (``ros2 node info`` lists
it under this node); rclpy's executor costs about 0.5 ms of Python (holding the GIL, so also slowing the
worker) per packet, and drivers send 1000 packets a second, while the reader's take costs about a third of
that. ``intake: executor`` uses an ordinary subscription callback. QoS (``qos: auto``): the event and image
subscriptions are made once their topic has a publisher, reliable when every publisher is (a replay, the
synthetic rig), best effort otherwise (drivers).

Time: window bounds are sensor µs. ``header.stamp`` of ``~/au`` is the window end mapped to ROS time through
a clock estimate (:class:`~microexp.timesync.estimator.ClockEstimator`) fitted on (first event time, packet
``header.stamp``) pairs, once it is locked (after about 2 s of stream); before that, the ROS arrival time of
the packet that closed the window. ``latency_ms`` is the time from the arrival of that packet (its DDS
reception time, ``received_timestamp`` of the message info) to the publish call.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, deque
from typing import Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from event_camera_msgs.msg import EventPacket
from microexp_msgs.msg import AUPrediction, SegmentMarker
from microexp_msgs.srv import TakeStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import Image

from microexp.aus import AU_CODES
from microexp.config import Param
from microexp.errors import FormatError, MicroexpError
from microexp.ros.base import RELIABLE_QOS, SENSOR_QOS, ReaderThreadGroup, declare_params, qos_named, run_node

PARAMS = (
    Param("model", "", "SNN checkpoint (microexp format); empty = the default model "
                       "($MICROEXP_MODELS_DIR or models/)/au_snn_default.pt"),
    Param("device", "auto", "torch device: auto = cuda when available, else cpu", choices=("auto", "cuda", "cpu")),
    Param("noise_filter_us", -1, "background-activity filter before binning (events.filters): an event counts when a "
          "neighbouring pixel fired within this many µs; -1 = as the model's training data (its checkpoint), 0 = off",
          min=-1, max=1_000_000, unit="µs"),
    Param("cuda_graph", True, "on CUDA, replay each SNN step as a captured CUDA graph (eager steps, with a warning, "
          "when the capture fails)"),
    Param("torch_threads", 1, "CPU threads torch may use (0 = torch's default). 1 by default: one window is a few "
          "small ops, and on a busy machine every multi-threaded op waits for a second core (measured: SNN step p99 "
          "9.5 ms with 1 thread, 80 ms with 2, on 2 cores beside a training job)", min=0, max=256),
    Param("gil_switch_ms", 0.5, "Python's thread switch interval for this process (sys.setswitchinterval; "
          "Python's default 5 ms makes the inference worker wait behind the packet reader after every torch "
          "op; 0 = leave it)", min=0.0, max=100.0, unit="ms"),
    Param("events_topic", "/evk4/events", "EventPacket topic to run on (encodings evt3, libcaer, libcaer_cmp)"),
    Param("frames_topic", "", "sensor_msgs/Image topic for face detection (APS or webcam); empty = no detection"),
    Param("sensor", "evk4", "name of the event sensor, copied into AUPrediction.sensor"),
    Param("qos", "auto", "QoS of the event and image subscriptions: auto = as their publishers offer (reliable when "
                         "every publisher is; made once one appears), sensor (best effort) or reliable",
          choices=("auto", "sensor", "reliable")),
    Param("slice_us", 33000, "window length (the paper's 33 ms)", min=1000, max=1_000_000, unit="µs"),
    Param("roi", "", "fixed crop x,y,width,height in event pixels, used without face detection or while the "
                     "face is lost (empty = the whole sensor)"),
    Param("face_rate_hz", 5.0, "face detections per second at most (0 = no detection, fixed ROI only)",
          min=0.0, max=120.0, unit="Hz"),
    Param("face_lost_after", 3, "consecutive detections without a face after which the face is lost", min=1, max=1000),
    Param("face_smoothing", 0.5, "weight of the newest face box in its exponential smoothing (1 = no smoothing)",
          min=0.01, max=1.0),
    Param("face_margin", 1.2, "side of the square crop / longer side of the face box", min=0.5, max=4.0),
    Param("face_box", "model", "face box rule: mtcnn (MTCNN's box, the paper's), landmarks (placed by MTCNN's five "
          "landmarks, infer.face.landmark_box) or model = as the model's training data (its checkpoint)",
          choices=("model", "mtcnn", "landmarks")),
    Param("face_min_probability", 0.9, "MTCNN detections less probable than this are ignored", min=0.0, max=1.0),
    Param("face_stale_s", 2.0, "the face is lost when no detection came for this long (0 = never)",
          min=0.0, max=3600.0, unit="s"),
    Param("frame_to_events", [1.0, 1.0, 0.0, 0.0], "face box from image to event pixels [sx, sy, ox, oy]: "
          "x = sx*u + ox, y = sy*v + oy (identity for the DAVIS346's own APS frames)"),
    Param("horizon", 10, "windows averaged by the smoothed decision", min=1, max=1000),
    Param("temperature", 0.0, "softmax temperature of the probabilities; 0 = the model's calibrated one (stored by "
          "`microexp export`), or 1 (plain softmax) when it has none", min=0.0, max=100.0),
    Param("gap_ms", 200.0, "a pause in the events longer than this (sensor time, or without packets) ends the "
                           "clip: the open window is published and the SNN reset", min=1.0, max=60000.0, unit="ms"),
    Param("chunk_us", 8000, "events are binned in batches spanning at most this much sensor time",
          min=100, max=1_000_000, unit="µs"),
    Param("queue_size", 4, "windows waiting for inference at most; when full the oldest is skipped",
          min=1, max=1000),
    Param("max_lag_ms", 100.0, "a window older than this when inference could start is skipped",
          min=1.0, max=60000.0, unit="ms"),
    Param("intake", "poll", "how event packets are taken: poll = a reader thread takes every waiting packet each "
                            "poll_ms (far less Python per packet than executor callbacks); executor = a subscription "
                            "callback", choices=("poll", "executor")),
    Param("poll_ms", 1.0, "reader thread period (intake=poll)", min=0.1, max=100.0, unit="ms"),
    Param("segments_topic", "/recorder/segments", "SegmentMarker topic; start/stop/discard reset the SNN "
                                                  "(empty = none)"),
    Param("diagnostics_period_s", 1.0, "period of ~/diagnostics", min=0.05, max=60.0, unit="s"),
)

SEGMENT_BOUNDARIES = ("start", "stop", "discard")


class InferenceNode(Node):
    """See the module docstring; parameters in :data:`PARAMS` and config/inference_node.yaml."""

    def __init__(self, name: str = "inference", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, PARAMS)
        # torch's OpenMP threads otherwise spin-wait after each parallel region: on a few shared cores they take
        # the CPU from the event callback and from each other (2 loaded cores: one SNN step 73 ms spinning,
        # 7 ms passive). OpenMP reads it when torch first loads, so it helps where this node imports torch first
        # (microexp infer, the launch file); a process that imported torch before should set it itself.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        from microexp.infer import default_model_path, load_au_model
        from microexp.infer.face import BoxMap, FaceTracker
        from microexp.models.device import resolve_device
        from microexp.infer.smoothing import LatencyStats
        from microexp.vision.crop import parse_roi

        if self.p["torch_threads"] > 0:
            torch.set_num_threads(self.p["torch_threads"])
        torch.set_flush_denormal(True)  # decaying membranes of silent neurons would otherwise go subnormal (slow on x86)
        if self.p["gil_switch_ms"] > 0:
            sys.setswitchinterval(self.p["gil_switch_ms"] / 1000.0)
        self.device = resolve_device(self.p["device"])
        model_path = self.p["model"] or str(default_model_path())
        if not self.p["model"] and not default_model_path().exists():
            raise MicroexpError(f"{self.get_name()}: parameter model is empty and the default model {model_path} "
                                "does not exist yet: give a checkpoint (microexp infer --model FILE)")
        self.model, self.meta, self.model_id = load_au_model(model_path, self.device)
        self.temperature = float(self.p["temperature"] or self.meta.get("extra", {}).get("temperature") or 1.0)
        trained_filter = int(self.meta.get("extra", {}).get("input", {}).get("noise_filter_us", 0) or 0)
        self.noise_filter_us = trained_filter if self.p["noise_filter_us"] < 0 else int(self.p["noise_filter_us"])
        trained_box = str(self.meta.get("extra", {}).get("input", {}).get("face_box", "mtcnn") or "mtcnn")
        self.face_box = trained_box if self.p["face_box"] == "model" else self.p["face_box"]
        self.roi = parse_roi(self.p["roi"])
        self.box_map = BoxMap.from_list(self.p["frame_to_events"])
        self.face: Optional[FaceTracker] = None
        self.detector_thread = None
        if self.p["frames_topic"] and self.p["face_rate_hz"] > 0:
            self.face = FaceTracker(self.p["face_smoothing"], self.p["face_lost_after"], self.box_map,
                                    self.p["face_margin"], self.p["face_stale_s"])

        self.latency = LatencyStats()
        self.pipeline = None
        self._decoder = None
        self._stream_key = None
        self._last_seq: Optional[int] = None
        self._frame_id = ""
        self._clock_est = None
        self._last_packet_ns: Optional[int] = None
        self._flushed = True
        # one Counter per thread that writes it (intake, worker, executor callbacks): no lost increments
        self.counts: Counter = Counter({k: 0 for k in (
            "packets", "events", "seq_gaps", "packets_missing", "decode_errors", "bad_packets", "idle_flushes",
            "stream_changes")})
        self._worker_counts: Counter = Counter({"published": 0, "infer_errors": 0})
        self._callback_counts: Counter = Counter({"segment_markers": 0})
        self._prev_skipped = 0
        self._image_size_warned = False

        self._queue: deque = deque()
        self._cond = threading.Condition()
        self._stop = False

        self.pub = self.create_publisher(AUPrediction, "~/au", RELIABLE_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "~/diagnostics", RELIABLE_QOS)
        self._events_group = MutuallyExclusiveCallbackGroup()
        other_group = self._other_group = MutuallyExclusiveCallbackGroup()
        self._intake_lock = threading.Lock()  # the binning side: one packet at a time
        self._reader = None
        self.events_sub = None
        self.frames_sub = None
        self.events_qos = self.frames_qos = ""
        if self.p["intake"] == "executor":
            idle_period = max(0.005, self.p["gap_ms"] / 2000.0)
            self.idle_timer = self.create_timer(idle_period, self._on_idle, callback_group=self._events_group)
        if not self._subscribe():
            self._subscribe_timer = self.create_timer(0.2, self._subscribe, callback_group=other_group)
        if self.p["segments_topic"]:
            self.segments_sub = self.create_subscription(SegmentMarker, self.p["segments_topic"], self._on_segment,
                                                         RELIABLE_QOS, callback_group=other_group)
        self.diag_timer = self.create_timer(self.p["diagnostics_period_s"], self.publish_diagnostics,
                                            callback_group=other_group)
        self._warm_up()
        self._worker = threading.Thread(target=self._work, name="au_inference", daemon=True)
        self._worker.start()
        if self.p["intake"] != "executor":
            self._reader = threading.Thread(target=self._read, name="event_intake", daemon=True)
            self._reader.start()
        if self.face is not None:
            self._start_face_detection()
        self.ready = True
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv, callback_group=other_group)
        self.get_logger().info(
            f"ready: model {self.model_id} on {self.device} (temperature {self.temperature:.3g}); "
            f"events {self.resolve_topic_name(self.p['events_topic'])}; "
            f"face {'from ' + self.p['frames_topic'] if self.face is not None else 'off (fixed ROI)'}")

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
        infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        if not infos:
            return None, ""
        if all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            return RELIABLE_QOS, "reliable"
        return SENSOR_QOS, "sensor"

    def _subscribe(self) -> bool:
        """Make the event (and image) subscriptions whose QoS is known; True when all are made."""
        if self.events_sub is None:
            qos, name = self._qos_for(self.p["events_topic"])
            if qos is not None:
                if self.p["intake"] == "executor":
                    self.events_sub = self.create_subscription(EventPacket, self.p["events_topic"], self._on_events,
                                                               qos, callback_group=self._events_group)
                else:  # taken by the reader thread only
                    self.events_sub = self.create_subscription(EventPacket, self.p["events_topic"], lambda _m: None,
                                                               qos, callback_group=ReaderThreadGroup())
                self.events_qos = name
                self.get_logger().info(f"subscribed to {self.events_sub.topic_name} ({name})")
        if self.face is not None and self.frames_sub is None:
            qos, name = self._qos_for(self.p["frames_topic"])
            if qos is not None:
                self.frames_sub = self.create_subscription(Image, self.p["frames_topic"], self._on_frame, qos,
                                                           callback_group=self._other_group)
                self.frames_qos = name
        done = self.events_sub is not None and (self.face is None or self.frames_sub is not None)
        timer = getattr(self, "_subscribe_timer", None)
        if done and timer is not None:
            timer.cancel()
        return done

    # ------------------------------------------------------------------------------------------- set-up
    def _warm_up(self) -> None:
        """One SNN step on zeros so that the first real window does not pay torch's first-call costs."""
        import torch

        size = self.model.config.input_size
        with torch.inference_mode():
            self.model.step(torch.zeros(1, 2, size, size, device=self.device))
        self.model.reset()
        # The whole live path once (decode, bin, crop, SNN step): their numba kernels compile on first use, which
        # would otherwise fall on the first windows of the first stream (skipped as late); compiled kernels are
        # cached in $NUMBA_CACHE_DIR, so later starts take a fraction of it.
        try:
            import numpy as np

            from microexp.events.codecs import make_decoder, make_encoder
            from microexp.events.dtype import make_events
            from microexp.infer.pipeline import StreamingAUPipeline

            rng = np.random.default_rng(0)
            n, (w, h) = 4000, (346, 260)
            t = np.sort(rng.integers(0, 100_000, n))
            events = make_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n))
            for enc in ("evt3", "libcaer"):
                payload, time_base = make_encoder(enc, w, h).encode(events)
                make_decoder(enc, w, h).decode(bytes(payload), int(time_base))
            pipeline = StreamingAUPipeline(self.model, w, h, slice_us=self.p["slice_us"], roi=None,
                                           device=self.device, temperature=self.temperature, cuda_graph=False,
                                           noise_filter_us=self.noise_filter_us)
            pipeline.push(events)
            pipeline.flush()
        except Exception as exc:  # noqa: BLE001 - a warm-up only: the live path reports its own errors
            self.get_logger().warning(f"warm-up of the live path failed: {type(exc).__name__}: {exc}")
        self.model.reset()

    def _start_face_detection(self) -> None:
        from microexp.infer.face import FaceDetectorThread
        from microexp.vision.face import MtcnnDetector
        from microexp.vision.image import to_rgb
        from microexp.ros.images import from_msg

        detector = MtcnnDetector(self.device, self.p["face_min_probability"], box=self.face_box)

        def detect(msg: Image):
            image = from_msg(msg)
            if not self._image_size_warned and self.box_map.is_identity and self.pipeline is not None and \
                    (msg.width, msg.height) != (self.pipeline.width, self.pipeline.height):
                self._image_size_warned = True
                self.get_logger().warning(
                    f"images are {msg.width}x{msg.height} but events {self.pipeline.width}x{self.pipeline.height} "
                    "and frame_to_events is the identity: set it to map face boxes across the sensors")
            return detector(to_rgb(image, msg.encoding))

        self.detector_thread = FaceDetectorThread(detect, self.face, self.p["face_rate_hz"],
                                                  on_error=lambda m: self.get_logger().warning(m))
        self.detector_thread.start()

    def _open_stream(self, msg: EventPacket) -> None:
        from microexp.events.codecs import make_decoder
        from microexp.infer.pipeline import StreamingAUPipeline
        from microexp.timesync.estimator import ClockEstimator

        key = (msg.encoding, int(msg.width), int(msg.height))
        self._decoder = make_decoder(msg.encoding, int(msg.width), int(msg.height))
        old = self.pipeline
        self.pipeline = StreamingAUPipeline(
            self.model, int(msg.width), int(msg.height), slice_us=self.p["slice_us"], roi=self.roi,
            device=self.device, horizon=self.p["horizon"], gap_us=int(self.p["gap_ms"] * 1000),
            temperature=self.temperature, face=self.face, chunk_us=self.p["chunk_us"],
            cuda_graph=self.p["cuda_graph"], noise_filter_us=self.noise_filter_us)
        if self.pipeline.graph_error:
            self.get_logger().warning(f"CUDA graph capture failed, eager SNN steps: {self.pipeline.graph_error}")
        if old is not None:
            self.counts["stream_changes"] += 1
            self._carry_counts(old)
            self.pipeline.note_discontinuity("stream")
        self._clock_est = ClockEstimator()
        self._stream_key = key
        self._last_seq = None
        self.get_logger().info(f"stream {self.p['events_topic']}: {key[0]} {key[1]}x{key[2]}")

    def _carry_counts(self, old) -> None:
        c = old.counters()
        for k in ("windows", "skipped", "empty_windows", "no_face_windows", "late_events", "gaps", "resets"):
            self.counts[f"old_{k}"] += c[k]

    # ---------------------------------------------------------------------------------------- callbacks
    def _read(self) -> None:
        """intake=poll: every poll_ms, take and process every packet waiting in the subscription."""
        period = self.p["poll_ms"] / 1000.0
        while self.events_sub is None and not self._stop:  # its publisher has not appeared yet
            time.sleep(0.05)
        if self._stop:
            return
        handle = self.events_sub.handle
        while not self._stop:
            while not self._stop:
                try:
                    with handle:
                        taken = handle.take_message(EventPacket, False)
                except Exception:  # noqa: BLE001 - the subscription is being destroyed
                    return
                if taken is None:
                    break
                self._on_events(*taken)
            self._on_idle()
            time.sleep(period)

    def _on_events(self, msg: EventPacket, info: dict) -> None:
        """One packet: decode, bin, enqueue the windows it completes. ``info`` is the DDS message info (two
        parameters: rclpy passes it to subscription callbacks too)."""
        with self._intake_lock:
            self._take_packet(msg, info)

    def _take_packet(self, msg: EventPacket, info: Optional[dict]) -> None:
        # Arrival = when DDS received the packet in this process (its received_timestamp, system clock), so
        # that time spent waiting to be taken counts; the take time where the RMW does not give it.
        arrival_ns = time.monotonic_ns()
        received = int(info.get("received_timestamp", 0)) if info else 0
        if received > 0:
            ros_arrival_ns = received
            arrival_ns -= max(0, time.time_ns() - received)
        else:
            ros_arrival_ns = self.get_clock().now().nanoseconds
        if self._stream_key != (msg.encoding, int(msg.width), int(msg.height)):
            try:
                self._open_stream(msg)
            except MicroexpError as exc:
                self.counts["bad_packets"] += 1
                self.get_logger().error(f"cannot run on {self.p['events_topic']}: {exc}",
                                        throttle_duration_sec=10.0)
                return
        self.counts["packets"] += 1
        if self._last_seq is not None and int(msg.seq) != self._last_seq + 1:
            self.counts["seq_gaps"] += 1
            if int(msg.seq) > self._last_seq:
                self.counts["packets_missing"] += int(msg.seq) - self._last_seq - 1
            self.pipeline.note_discontinuity("seq_gap")
        self._last_seq = int(msg.seq)
        self._frame_id = msg.header.frame_id
        t_decode = time.monotonic_ns()
        try:
            events, _ = self._decoder.decode(msg.events, int(msg.time_base))
        except FormatError as exc:
            self.counts["decode_errors"] += 1
            self._decoder.reset()
            self.pipeline.note_discontinuity("decode_error")
            self.get_logger().warning(f"undecodable packet seq {msg.seq}: {exc}", throttle_duration_sec=5.0)
            return
        decode_ms = (time.monotonic_ns() - t_decode) / 1e6
        self._last_packet_ns = arrival_ns
        if events.shape[0] == 0:
            return
        self.counts["events"] += int(events.shape[0])
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._clock_est.update(int(events["t"][0]), stamp_ns if stamp_ns > 0 else ros_arrival_ns)
        windows = self.pipeline.bin(events, arrival_ns, decode_ms)
        self._flushed = False
        self._enqueue(windows, ros_arrival_ns)
        self.latency.add("intake", (time.monotonic_ns() - arrival_ns) / 1e6)

    def _on_idle(self) -> None:
        """No packet for gap_ms of wall time: publish the open window now rather than when the stream resumes."""
        if self.pipeline is None or self._flushed or self._last_packet_ns is None:
            return
        if (time.monotonic_ns() - self._last_packet_ns) / 1e6 < self.p["gap_ms"]:
            return
        with self._intake_lock:
            self._flushed = True
            self.counts["idle_flushes"] += 1
            self._enqueue(self.pipeline.flush_windows(), self.get_clock().now().nanoseconds)

    def _enqueue(self, windows: list, ros_arrival_ns: int) -> None:
        if not windows:
            return
        est = self._clock_est
        pipeline = self.pipeline
        with self._cond:
            for w in windows:
                stamp = int(est.to_ros_ns(w.t1)) if est is not None and est.locked else ros_arrival_ns
                if len(self._queue) >= self.p["queue_size"]:
                    old_pipeline, old_window, _ = self._queue.popleft()
                    old_pipeline.skip(old_window)
                self._queue.append((pipeline, w, stamp))
            self._cond.notify()

    def _on_frame(self, msg: Image) -> None:
        if self.detector_thread is not None:
            self.detector_thread.submit(msg)

    def _on_segment(self, msg: SegmentMarker) -> None:
        if msg.event in SEGMENT_BOUNDARIES and self.pipeline is not None:
            self._callback_counts["segment_markers"] += 1
            self.pipeline.reset("segment")

    # ------------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        max_lag_ns = self.p["max_lag_ms"] * 1e6
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                pipeline, window, stamp = self._queue.popleft()
            if time.monotonic_ns() - window.arrival_ns > max_lag_ns:
                pipeline.skip(window)
                continue
            try:
                result = pipeline.infer(window)
            except Exception as exc:  # noqa: BLE001 - one bad window must not stop live inference
                self._worker_counts["infer_errors"] += 1
                pipeline.skip(window)
                self.get_logger().error(f"inference failed on window {window.t0}: {type(exc).__name__}: {exc}",
                                        throttle_duration_sec=5.0)
                continue
            self._publish(result, stamp)

    def _publish(self, r, stamp_ns: int) -> None:
        msg = AUPrediction()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        msg.header.frame_id = self._frame_id
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
        msg.latency_ms = float((time.monotonic_ns() - r.arrival_ns) / 1e6)
        before = time.monotonic_ns()
        self.pub.publish(msg)
        after = time.monotonic_ns()
        self._worker_counts["published"] += 1
        self.latency.add("publish", (after - before) / 1e6)
        self.latency.add("total", (after - r.arrival_ns) / 1e6)

    # -------------------------------------------------------------------------------------- diagnostics
    @property
    def published(self) -> int:
        """AUPredictions published so far."""
        return self._worker_counts["published"]

    def counters(self) -> dict:
        """Everything counted so far (pipeline and node), one flat dict."""
        out = {**self.counts, **self._worker_counts, **self._callback_counts}
        if self.pipeline is not None:
            c = self.pipeline.counters()
            for k in ("windows", "skipped", "empty_windows", "no_face_windows", "late_events", "gaps", "resets"):
                out[k] = c[k] + out.pop(f"old_{k}", 0)
            for reason, n in c["resets_by_reason"].items():
                out[f"resets.{reason}"] = n
        with self._cond:
            out["queued"] = len(self._queue)
        return out

    def latency_summary(self) -> dict:
        """p50/p99 (ms) per stage: the pipeline's (decode, bin, queue, crop, snn, post, ready), the node's
        (intake: a packet's reception by DDS to the end of its decoding and binning; publish; total = reception
        of the closing packet to publish) and face detection (detect)."""
        out = {} if self.pipeline is None else self.pipeline.latency.summary()
        out.update(self.latency.summary())
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
                problems.append("no face (fixed ROI)")
        if self.pipeline is None:
            problems.append(f"no events yet on {self.p['events_topic']}")
        status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
        total = latency.get("total")
        status.message = "; ".join(problems) if problems else (
            f"{counts.get('windows', 0)} windows, p99 {total['p99']:.2f} ms" if total else "running")
        values = {"model_id": self.model_id, "device": self.device, "events_topic": self.p["events_topic"],
                  "face": face_state}
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
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        if self.detector_thread is not None:
            self.detector_thread.stop()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(InferenceNode, args)
