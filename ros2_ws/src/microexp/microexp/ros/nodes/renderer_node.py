"""Renderer node: event frames as ``sensor_msgs/Image`` that every ROS viewer shows (rqt_image_view, Foxglove, RViz).

Subscribes to an EventPacket topic (``events_topic``; any encoding of :mod:`microexp.events.codecs`) best effort
and shallow, so that it matches every publisher and drops packets rather than queueing them when it falls behind;
a reader thread takes and decodes them (:class:`~microexp.events.stream.StreamReader`). A timer publishes
``~/frame`` (rgb8) at ``rate_hz``: the events of the last ``window_ms`` of sensor time, ON and OFF in two colours
on a dark background (:mod:`microexp.vision.render_events`). The node is not on the inference path: it is a
subscriber like any other, in a process of its own.

Overlays, both in ``overlay_colour``: the AU of the newest ``microexp_msgs/AUPrediction`` on
``predictions_topic`` written in the top-left corner in a built-in bitmap font (``AU12 0.87``: the smoothed
decision and its probability; ``REST`` or ``NO FACE`` as the message's state says), and the face box the
inference node tracks (the prediction's ``crop_box`` while its ``face_found``), outlined; ``roi`` outlines a fixed
box instead while there is none. A label or box older than ``stale_s`` is dropped, and so are the events when no
packet arrived for ``stale_s``: the frame goes dark when the stream stops.

``header.stamp`` of a frame is the ROS time it was rendered at; ``header.frame_id`` the packets' frame unless
``frame_id`` says otherwise. No frame is published before the first packet (the sensor geometry comes with it).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from event_camera_msgs.msg import EventPacket
from microexp.config import Param, check_topic_name
from microexp.errors import ParameterError
from microexp.events.stream import Packet, StreamReader
from microexp.ros.images import to_msg
from microexp.ros.intake import Intake
from microexp.ros.main import run_node
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.qos import SENSOR_QOS
from microexp.vision.crop import parse_roi
from microexp.vision.render_events import Colours, EventFrameRenderer
from microexp_msgs.msg import AUPrediction

PARAMS = (
    Param("events_topic", "/evk4/events", "EventPacket topic to render (encodings evt3, libcaer, libcaer_cmp)"),
    Param(
        "predictions_topic",
        "/inference/au",
        "AUPrediction topic whose AU is written on the frame and whose face box is outlined (empty = neither)",
    ),
    Param("roi", "", "fixed box x,y,width,height in event pixels, outlined while no tracked face box is known"),
    Param("rate_hz", 15.0, "frames published per second on ~/frame", min=0.5, max=120.0, unit="Hz"),
    Param("window_ms", 33.0, "sensor time a frame shows, ending at the newest event", min=1.0, max=10000.0, unit="ms"),
    Param(
        "stale_s",
        1.0,
        "the frame goes dark, and the AU label goes, when nothing new arrived for this long",
        min=0.05,
        max=3600.0,
        unit="s",
    ),
    Param("on_colour", [255, 255, 255], "RGB of a pixel with more ON than OFF events in the window"),
    Param("off_colour", [40, 120, 255], "RGB of a pixel with more OFF than ON events in the window"),
    Param("background_colour", [0, 0, 0], "RGB of a pixel without events"),
    Param("overlay_colour", [0, 255, 0], "RGB of the face box and the AU label"),
    Param("label_scale", 0, "pixels per font pixel of the label (0 = about 1/16 of the frame height)", min=0, max=64),
    Param("frame_id", "", "frame_id of ~/frame (empty = the event packets' frame_id)"),
    Param(
        "qos",
        "reliable",
        "QoS of ~/frame: reliable (keep last 2; every viewer matches it) or sensor (best effort)",
        choices=("reliable", "sensor"),
    ),
)
POLL_S = 0.002  # the reader thread takes waiting packets this often
FRAME_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=2,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Overlay subscriptions: best effort matches reliable and best-effort publishers alike.
OVERLAY_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)


def au_label(msg) -> str:
    """The text an AUPrediction puts on the frame: ``AU12 0.87`` (its smoothed decision, or its top class before
    any smoothing), ``REST`` or ``NO FACE``."""
    state = str(msg.state)
    if state == "no_face":
        return "NO FACE"
    if state == "rest":
        return "REST"
    if int(msg.smoothed_windows) > 0:
        k, probs = int(msg.smoothed_top1), msg.smoothed_probabilities
    else:
        k, probs = int(msg.top3[0]), msg.probabilities
    if not 0 <= k < len(msg.au_codes):
        return ""
    return f"AU{int(msg.au_codes[k])} {float(probs[k]):.2f}"


def prediction_box(msg) -> Optional[tuple]:
    """The tracked face box ``(x0, y0, x1, y1)`` of an AUPrediction (its ``crop_box`` while ``face_found``), or
    None (no face: the crop is a fixed ROI or the whole sensor)."""
    if not msg.face_found:
        return None
    box = tuple(float(v) for v in msg.crop_box)
    return box if box[2] > box[0] and box[3] > box[1] else None


class RendererNode(MicroexpNode):
    def __init__(self, name: str = "renderer", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides)
        self.p = declare_params(self, PARAMS)
        for key in ("events_topic", "predictions_topic"):
            if key != "events_topic" and not self.p[key]:
                continue
            check_topic_name(self.p[key], f"{self.get_name()}: parameter {key}")
        try:
            self.colours = Colours(
                self.p["on_colour"], self.p["off_colour"], self.p["background_colour"], self.p["overlay_colour"]
            )
            self.roi = parse_roi(self.p["roi"])
        except ParameterError as exc:
            raise ParameterError(f"{self.get_name()}: {exc}") from None
        self.window_us = int(round(self.p["window_ms"] * 1000))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.reader = StreamReader()
        self.renderer: Optional[EventFrameRenderer] = None
        self.packet_frame_id = ""
        self.last_packet = 0.0  # monotonic time of the newest packet with events
        self.label, self.label_at = "", 0.0
        self.box = None
        self.counts = {"packets": 0, "events": 0, "decode_errors": 0, "frames": 0}
        qos = FRAME_QOS if self.p["qos"] == "reliable" else SENSOR_QOS
        self.pub = self.create_publisher(Image, "~/frame", qos)
        if self.p["predictions_topic"]:
            self.create_subscription(AUPrediction, self.p["predictions_topic"], self._on_prediction, OVERLAY_QOS)
        self.intake = Intake(self, self._on_packet, POLL_S, raw=False, name="renderer_intake")
        self.intake.subscribe(self.p["events_topic"], EventPacket, SENSOR_QOS)
        self.intake.start()
        self.timer = self.create_timer(1.0 / self.p["rate_hz"], self.publish_frame)

    def _on_packet(self, _topic: str, msg, _info) -> None:
        """A packet taken by the reader thread: decoded into the window (a new geometry starts a new window)."""
        packet = Packet.from_msg(msg)
        decoded = self.reader.feed(packet)
        with self._lock:
            self.counts["packets"] += 1
            if decoded.error is not None:
                self.counts["decode_errors"] += 1
                return
            if decoded.opened or self.renderer is None:
                self.renderer = EventFrameRenderer(packet.width, packet.height, self.window_us, self.colours)
                self.get_logger().info(
                    f"rendering {self.p['events_topic']}: {packet.encoding} {packet.width} x {packet.height}"
                )
            self.packet_frame_id = packet.frame_id
            if decoded.events.shape[0]:
                self.renderer.add(decoded.events)
                self.counts["events"] += int(decoded.events.shape[0])
                self.last_packet = time.monotonic()

    def _on_prediction(self, msg) -> None:
        self.label, self.label_at = au_label(msg), time.monotonic()
        self.box = prediction_box(msg)

    def frame(self):
        """The frame to publish now (H x W x 3 RGB), or None before the first packet."""
        now = time.monotonic()
        stale = self.p["stale_s"]
        fresh = now - self.label_at <= stale
        label = self.label if fresh else ""
        box = self.box if self.box is not None and fresh else self.roi
        with self._lock:
            if self.renderer is None:
                return None
            if self.renderer.latest_us is not None and now - self.last_packet > stale:
                self.renderer.reset()
            return self.renderer.render(box=box, label=label, label_scale=self.p["label_scale"])

    def publish_frame(self) -> None:
        image = self.frame()
        if image is None:
            return
        msg = to_msg(image, "rgb8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.p["frame_id"] or self.packet_frame_id
        self.pub.publish(msg)
        self.counts["frames"] += 1

    def destroy_node(self):
        self._stop.set()
        self.intake.stop()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(RendererNode, args)
