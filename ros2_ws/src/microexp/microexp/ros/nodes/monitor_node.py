"""Monitor node: the live web page of a session (:mod:`microexp.monitor`), served on ``host``:``port``.

Subscribes with QoS of its own that never holds a publisher back (best effort for the streams, shallow histories
everywhere). A reader thread takes the busy topics every 20 ms, in batches: the event topics (``events_topics``;
each turn's EVT3 packets decoded in one go, for the event frames and the event rate), the image topics
(``image_topics``: APS, webcam; taken as bytes, at most ``image_rate_hz`` of them deserialized and shown, the rest
only counted) and the inference node's ``~/au``. The executor gets the quiet ones: the sensors' ``sync_status``,
the inference node's ``~/au_events``, the recorder's ``~/segments`` and ``~/diagnostics`` (disk, losses), the
protocol's ``~/phase`` and a simulated subject's ground truth (the phase of its face movement). It serves the page (:class:`~microexp.monitor.server.MonitorServer`) on
``127.0.0.1`` by default; any other ``host`` needs a token (``microexp monitor`` makes one), which the page, its
frames and its websocket require. A topic without a publisher just shows nothing; a sensor whose topics fall
silent for ``stale_s`` is shown stopped.
"""

from __future__ import annotations

import os
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from event_camera_msgs.msg import EventPacket
from microexp.config import Param, check_topic_name
from microexp.errors import MicroexpError
from microexp.events.stream import Packet, StreamReader, merge_evt3
from microexp.monitor.server import MonitorServer
from microexp.monitor.state import MonitorState
from microexp.ros.images import from_msg
from microexp.ros.intake import Intake
from microexp.ros.main import run_node
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.qos import SENSOR_QOS
from microexp_msgs.msg import AUEvent, AUPrediction, GroundTruth, SegmentMarker, SyncStatus

SENSORS = ("davis346", "evk4", "webcam")
PARAMS = (
    Param("host", "127.0.0.1", "address the page is served on (anything but a loopback address needs token)"),
    Param("port", 8765, "TCP port of the page (0 = any free port)", min=0, max=65535),
    Param(
        "token",
        "",
        "secret the page, its frames and its websocket require (?token=...); empty = $MICROEXP_MONITOR_TOKEN, or "
        "none (a parameter can be read by every node of the domain: prefer the environment variable)",
    ),
    Param("push_hz", 5.0, "snapshots per second pushed to each open page", min=0.1, max=60.0, unit="Hz"),
    Param("events_topics", ["/davis346/events", "/evk4/events"], "EventPacket topics shown as event frames"),
    Param("image_topics", ["/davis346/image_raw", "/webcam/image_raw"], "sensor_msgs/Image topics shown as images"),
    Param(
        "image_rate_hz",
        5.0,
        "images decoded per second and topic (the others are counted only)",
        min=0.1,
        max=60.0,
        unit="Hz",
    ),  # fmt: skip
    Param("sync_topics", [f"/{s}/sync_status" for s in SENSORS], "SyncStatus topics (clock offset, drift, lock)"),
    Param("predictions_topic", "/inference/au", "AUPrediction topic (AU bars, state, face box; empty = none)"),
    Param("au_events_topic", "/inference/au_events", "AUEvent topic (the spotted AU timeline; empty = none)"),
    Param("segments_topic", "/recorder/segments", "SegmentMarker topic of the recorder (empty = none)"),
    Param("recorder_topic", "/recorder/diagnostics", "the recorder's diagnostics: disk, losses (empty = none)"),
    Param("phase_topic", "/protocol/phase", "the protocol node's phase (std_msgs/String; empty = none)"),
    Param("ground_truth_topic", "/synthetic/ground_truth", "GroundTruth of a simulated subject (empty = none)"),
    Param("window_ms", 33.0, "sensor time an event frame shows", min=1.0, max=10000.0, unit="ms"),
    Param("stale_s", 1.0, "a sensor silent this long is shown stopped", min=0.1, max=60.0, unit="s"),
)
POLL_S = 0.02  # the reader thread takes waiting packets this often (a frame shows 33 ms: no need for more)


def _qos(depth: int, reliable: bool = False, latched: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


BUSY_QOS = _qos(5)  # images and AU output, taken by the reader thread (best effort matches every publisher)
NEWEST_QOS = _qos(1)  # clock state, recorder status, ground truth: only the newest matters
EVENTS_QOS = _qos(20, reliable=True)  # AU events: every one, a short history
MARKERS_QOS = _qos(20, reliable=True, latched=True)  # segment markers, phase: the latched newest one too


def diagnostics_values(msg) -> dict:
    """The key/value pairs of a DiagnosticArray's first status, numbers parsed."""
    out: dict = {}
    for status in msg.status[:1]:
        for kv in status.values:
            try:
                out[kv.key] = int(kv.value)
            except ValueError:
                out[kv.key] = kv.value
    return out


def recorder_status(values: dict) -> dict:
    """The recorder's diagnostics values (flat keys) as :meth:`MonitorState.recorder` takes them."""
    topics: dict = {}
    for key, v in values.items():
        if key.startswith("topic.") and key.rsplit(".", 1)[-1] in ("received", "lost"):
            topic, field = key[len("topic.") :].rsplit(".", 1)
            topics.setdefault(topic, {})[field] = v
    seg = {k[len("segment.") :]: v for k, v in values.items() if k.startswith("segment.")}
    return {
        "bytes": int(values.get("bytes", 0)),
        "queued_bytes": int(values.get("queued_bytes", 0)),
        "free_bytes": int(values.get("free_bytes", -1)),
        "segments": int(values.get("segments", 0)),
        "segment": seg or None,
        "topics": topics,
    }


class MonitorNode(MicroexpNode):
    def __init__(self, name: str = "monitor", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides)
        self.p = declare_params(self, PARAMS)
        where = f"{self.get_name()}: parameter"
        for key in ("events_topics", "image_topics", "sync_topics"):
            for topic in (t for t in self.p[key] if t):
                check_topic_name(topic, f"{where} {key}")
        for key in (
            "predictions_topic",
            "au_events_topic",
            "segments_topic",
            "recorder_topic",
            "phase_topic",
            "ground_truth_topic",
        ):
            if self.p[key]:
                check_topic_name(self.p[key], f"{where} {key}")
        self.state = MonitorState(int(round(self.p["window_ms"] * 1000)), self.p["stale_s"])
        self.readers: dict[str, StreamReader] = {}
        self._image_at: dict[str, float] = {}
        self._pending: dict[str, list] = {}  # topic -> packets taken this turn, decoded together after it
        # the busy topics (events, images, predictions) are taken by a reader thread every POLL_S, in batches: an
        # executor callback per message would wake the executor dozens of times a second
        self.intake = Intake(self, self._route, POLL_S, raw=False, name="monitor_intake", on_idle=self._decode_pending)
        self._routes: dict = {}
        for topic in (t for t in self.p["events_topics"] if t):
            self._routes[topic] = self._on_packet
            self.intake.subscribe(topic, EventPacket, SENSOR_QOS)
        for topic in (t for t in self.p["image_topics"] if t):
            # raw: an image is deserialized only when it is shown (image_rate_hz), the others only counted
            self._routes[topic] = self._on_image
            self.intake.subscribe(topic, Image, BUSY_QOS, raw=True)
        if self.p["predictions_topic"]:
            self._routes[self.p["predictions_topic"]] = lambda _topic, msg: self._on_prediction(msg)
            self.intake.subscribe(self.p["predictions_topic"], AUPrediction, BUSY_QOS)
        self._subscribe()
        self.intake.start()
        try:
            token = self.p["token"] or os.environ.get("MICROEXP_MONITOR_TOKEN", "")
            self.server = MonitorServer(self.state, self.p["host"], self.p["port"], token, self.p["push_hz"]).start()
        except MicroexpError:
            self.intake.stop()
            raise
        self.get_logger().info(f"monitor page on {self.url_shown}")

    @property
    def url(self) -> str:
        """The page's address, with its token."""
        return self.server.url

    @property
    def url_shown(self) -> str:
        """The page's address as logs show it: the token left out."""
        return self.server.url.split("?", 1)[0] + (" (token required)" if self.server.token else "")

    def _subscribe(self) -> None:
        """The quiet topics (a message a second or fewer), through the executor."""
        p = self.p
        for topic in (t for t in p["sync_topics"] if t):
            self.create_subscription(SyncStatus, topic, self._on_sync, NEWEST_QOS)
        subs = (
            ("au_events_topic", AUEvent, self._on_au_event, EVENTS_QOS),
            ("segments_topic", SegmentMarker, self._on_segment, MARKERS_QOS),
            ("recorder_topic", DiagnosticArray, self._on_recorder, NEWEST_QOS),
            ("phase_topic", String, self._on_phase, MARKERS_QOS),
            ("ground_truth_topic", GroundTruth, self._on_ground_truth, NEWEST_QOS),
        )
        for key, cls, callback, qos in subs:
            if p[key]:
                self.create_subscription(cls, p[key], callback, qos)

    # -- callbacks --------------------------------------------------------------------------------------------
    def _route(self, topic: str, msg, _info) -> None:
        self._routes[topic](topic, msg)

    def _on_packet(self, topic: str, msg) -> None:
        self._pending.setdefault(topic, []).append(Packet.from_msg(msg))

    def _decode_pending(self) -> None:
        """The packets of this turn, per topic, EVT3 runs joined: one decode per run instead of one per packet."""
        for topic, packets in self._pending.items():
            if not packets:
                continue
            reader = self.readers.setdefault(topic, StreamReader())
            for packet, n in merge_evt3(packets):
                decoded = reader.feed(packet)
                if decoded.error is None:
                    self.state.events(topic, decoded.events, packet.width, packet.height, n)
            packets.clear()

    def _on_image(self, topic: str, data: bytes) -> None:
        now = time.monotonic()
        if now - self._image_at.get(topic, 0.0) < 1.0 / self.p["image_rate_hz"]:
            self.state.count(topic, "image")
            return
        self._image_at[topic] = now
        try:
            msg = deserialize_message(data, Image)
            image = from_msg(msg)
        except Exception:  # noqa: BLE001 - an encoding the page cannot show: counted, not shown
            self.state.count(topic, "image")
            return
        self.state.image(topic, np.asarray(image), str(msg.encoding))

    def _on_sync(self, msg) -> None:
        self.state.sync(
            [
                {
                    "sensor": s.sensor,
                    "offset_ms": s.offset_ms,
                    "drift_ppm": s.drift_ppm,
                    "jitter_us": s.jitter_us,
                    "locked": bool(s.locked),
                    "samples": int(s.samples),
                    "outliers": int(s.outliers),
                }  # fmt: skip
                for s in msg.sensors
            ]
        )

    def _on_prediction(self, msg) -> None:
        self.state.prediction(
            {
                "sensor": msg.sensor,
                "state": msg.state,
                "au_codes": list(msg.au_codes),
                "probabilities": list(msg.probabilities),
                "smoothed_probabilities": list(msg.smoothed_probabilities),
                "smoothed_windows": int(msg.smoothed_windows),
                "face_found": bool(msg.face_found),
                "crop_box": [float(v) for v in msg.crop_box],
                "latency_ms": float(msg.latency_ms),
                "events": int(msg.events),
                "model_id": msg.model_id,
            }
        )

    def _on_au_event(self, msg) -> None:
        self.state.au_event(
            {
                "au": msg.au,
                "confidence": float(msg.confidence),
                "onset_us": int(msg.onset_us),
                "offset_us": int(msg.offset_us),
                "sensor": msg.sensor,
            }  # fmt: skip
        )

    def _on_segment(self, msg) -> None:
        self.state.segment(
            {
                "event": msg.event,
                "segment_id": int(msg.segment_id),
                "subject": msg.subject,
                "au": msg.au,
                "trial": int(msg.trial),
                "status": msg.status,
            }  # fmt: skip
        )

    def _on_recorder(self, msg) -> None:
        self.state.recorder(recorder_status(diagnostics_values(msg)))

    def _on_phase(self, msg) -> None:
        self.state.phase(msg.data)

    def _on_ground_truth(self, msg) -> None:
        self.state.ground_truth({"subject": msg.subject, "au": msg.au, "trial": int(msg.trial), "phase": msg.phase})

    def destroy_node(self):
        self.intake.stop()
        self.server.stop()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(MonitorNode, args)
