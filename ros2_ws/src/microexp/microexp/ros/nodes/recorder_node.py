"""Recorder node: segment-labelled rosbag2 recording of the rig's topics.

Subscribes (serialized: the CDR bytes are stored as received, never re-serialized in Python) to the
configured topics as they appear, with the reliability their publishers offer; hands every message to a
:class:`~microexp.bags.writer.SegmentWriter` (own thread, bounded queue, drops counted); one bag per
segment, opened and closed through the services ``~/start_segment``, ``~/stop_segment``,
``~/redo_segment``, ``~/label_segment``; ``~/segments`` (SegmentMarker) announces every change; the session
manifest (``manifest.json``) and, at the end, ``summary.json`` lie beside the bags.

The session ends through ``~/end_session`` (the protocol calls it when it is done) or when the node shuts down
(Ctrl-C, SIGTERM, the end of ``ros2 launch``): either way the open segment is closed (an interrupted take is
marked ``error`` with the reason), ``summary.json`` is written and the manifest gets ``finished`` and
``end_reason``, the sensors whose topics were recorded and their last clock-sync state (from their
``sync_status`` topics). ``~/take_status`` reports the messages received per topic (the protocol compares them
with what a simulated subject published); ``~/diagnostics`` (diagnostic_msgs/DiagnosticArray, every
``diagnostics_period_s``) the session's state: bytes written and queued, free space on its disk, the segments and the
open one, and per topic the messages received and lost.
Losses are counted where they happen: EventPacket ``seq`` gaps (read from the CDR bytes: packets that never
reached the recorder) and writer-queue drops, per segment (``loss`` in the manifest) and per topic in the
summary. Every publisher of a recorded topic is listed; one outside the session's graph
(``expected_publishers``, :mod:`microexp.ros.neighbours`) is warned about once and flags the segment
(``foreign_publishers``).
"""

from __future__ import annotations

import json
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from microexp.bags.manifest import (
    check_output_folder,
    check_pseudonym,
)
from microexp.bags.recording import RecordingSession
from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.ros.intake import Intake, publishers_qos
from microexp.ros.main import run_node
from microexp.ros.messages import msg_class
from microexp.ros.neighbours import PublisherWatch
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.qos import LATCHED_QOS, RELIABLE_QOS
from microexp_msgs.msg import SegmentMarker
from microexp_msgs.srv import EndSession, LabelSegment, RedoSegment, StartSegment, StopSegment, TakeStatus

DEFAULT_TOPICS = (
    "/davis346/events|event_camera_msgs/msg/EventPacket",
    "/davis346/image_raw|sensor_msgs/msg/Image",
    "/davis346/imu|sensor_msgs/msg/Imu",
    "/davis346/triggers|event_camera_msgs/msg/EventPacket",
    "/davis346/sync_status|microexp_msgs/msg/SyncStatus",
    "/evk4/events|event_camera_msgs/msg/EventPacket",
    "/evk4/triggers|event_camera_msgs/msg/EventPacket",
    "/evk4/sync_status|microexp_msgs/msg/SyncStatus",
    "/webcam/image_raw|sensor_msgs/msg/Image",
    "/webcam/sync_status|microexp_msgs/msg/SyncStatus",
    "/recorder/segments|microexp_msgs/msg/SegmentMarker",
    "/synthetic/ground_truth|microexp_msgs/msg/GroundTruth",
)

PARAMS = (
    Param("out", "recordings/session", "session folder (created owner-only; one bag folder per segment inside)"),
    Param("subject", "S00", "subject pseudonym (letters, digits, _ or -; never a name)"),
    Param("storage", "mcap", "bag storage format", choices=("mcap", "sqlite3")),
    Param("topics", list(DEFAULT_TOPICS), "topics to record as 'topic|package/msg/Type'"),
    Param(
        "queue_mb",
        512,
        "byte budget of the writer queue; beyond it messages are dropped and counted",
        min=1,
        max=65536,
        unit="MB",
    ),
    Param(
        "split_mb",
        4096,
        "start a new bag of the same segment past this size (0 = never)",
        min=0,
        max=1_000_000,
        unit="MB",
    ),
    Param(
        "split_s",
        0.0,
        "start a new bag of the same segment past this duration (0 = never)",
        min=0.0,
        max=86400.0,
        unit="s",
    ),
    Param("source", "", "what drives the sensors (device, file, synthetic): written to the manifest"),
    Param(
        "tail_quiet_s",
        0.3,
        "after a stop, messages received before it are still taken until none came for this long",
        min=0.0,
        max=10.0,
        unit="s",
    ),
    Param("tail_max_s", 10.0, "... but for at most this long", min=0.0, max=600.0, unit="s"),
    Param(
        "intake",
        "poll",
        "how messages are taken: poll = a reader thread takes every waiting message of every "
        "topic each poll_ms (serialized bytes, no executor work per message); executor = "
        "subscription callbacks",
        choices=("poll", "executor"),
    ),
    Param("poll_ms", 1.0, "reader thread period (intake=poll)", min=0.1, max=100.0, unit="ms"),
    Param(
        "expect_topics",
        [""],
        "topics that must deliver during every segment; a segment in which one is silent "
        "is closed as error with the reason (empty = no check)",
    ),
    Param(
        "expected_publishers",
        ["/recorder", "/synthetic", "/davis346", "/evk4", "/webcam", "/protocol"],
        "nodes of this session's graph (fully qualified names); a recorded topic published by any other node, "
        "or from another host, is flagged as foreign (empty list = any node name)",
    ),
    Param("allow_remote_publishers", False, "expected nodes may run on other hosts (discovery beyond localhost)"),
    Param(
        "diagnostics_period_s",
        1.0,
        "period of ~/diagnostics (bytes written, free disk space, segment, messages and losses per topic)",
        min=0.05,
        max=60.0,
        unit="s",
    ),
)


class RecorderNode(MicroexpNode):
    """The ROS face of a :class:`~microexp.bags.recording.RecordingSession`: subscriptions, services, markers,
    and what the graph says of the publishers."""

    def __init__(self, name: str = "recorder", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, PARAMS)
        check_pseudonym(self.p["subject"])
        self.folder = Path(self.p["out"])
        if self.folder.exists() and not self.folder.is_dir():
            raise MicroexpError(f"{self.get_name()}: parameter out: {self.folder} is a file, not a folder")
        if self.folder.exists() and any(self.folder.iterdir()):
            raise MicroexpError(
                f"{self.get_name()}: parameter out: {self.folder} exists and is not empty; "
                "choose a new session folder (nothing already recorded is overwritten)"
            )
        self.topics: dict[str, str] = {}
        for entry in self.p["topics"]:
            topic, _, msgtype = entry.partition("|")
            if not msgtype or msgtype.count("/") != 2:
                raise MicroexpError(f"{self.get_name()}: parameter topics: {entry!r} is not 'topic|package/msg/Type'")
            self.topics[topic] = msgtype
        check_output_folder(self.folder, f"{self.get_name()}: parameter out:")
        self.exit_reason = ""
        self.marker_pub = self.create_publisher(SegmentMarker, "~/segments", LATCHED_QOS)
        self.neighbours = PublisherWatch(
            self, self.p["expected_publishers"], allow_remote=self.p["allow_remote_publishers"]
        )
        self.session = RecordingSession(
            self.folder,
            self.topics,
            self.p["subject"],
            self.p["storage"],
            self.p["source"],
            queue_bytes=self.p["queue_mb"] << 20,
            split_bytes=self.p["split_mb"] << 20,
            split_seconds=self.p["split_s"],
            tail_quiet_s=self.p["tail_quiet_s"],
            tail_max_s=self.p["tail_max_s"],
            expect_topics=self.p["expect_topics"],
            now_ns=lambda: self.get_clock().now().nanoseconds,
            log=self._log_line,
            on_marker=self._marker,
            foreign=self._foreign_now,
        )
        self.create_service(StartSegment, "~/start_segment", self._start_srv)
        self.create_service(StopSegment, "~/stop_segment", self._stop_srv)
        self.create_service(RedoSegment, "~/redo_segment", self._redo_srv)
        self.create_service(LabelSegment, "~/label_segment", self._label_srv)
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv)
        self.create_service(EndSession, "~/end_session", self._end_session_srv)
        self._publishers_seen: dict = {}  # topic -> publisher node names
        self._lost: dict = {}  # topic -> the publishers that vanished during the session
        self._subs = {}
        self.intake = None
        if self.p["intake"] == "poll":
            self.intake = Intake(self, self._on_raw, self.p["poll_ms"] / 1000.0, name="recorder_intake").start()
        self.discover()
        self.create_timer(0.2, self.discover)
        self._info_subs: dict = {}
        self.create_timer(0.5, self._discover_sensor_info)
        self.diag_pub = self.create_publisher(DiagnosticArray, "~/diagnostics", RELIABLE_QOS)
        self.create_timer(self.p["diagnostics_period_s"], self.publish_diagnostics)
        self.get_logger().info(f"recording into {self.folder} ({self.p['storage']}); {len(self.topics)} topics")

    # the session's state, as tools and tests read it
    manifest = property(lambda self: self.session.manifest)
    writer = property(lambda self: self.session.writer)
    summary = property(lambda self: self.session.summary)
    current = property(lambda self: self.session.current)
    last_closed = property(lambda self: self.session.last_closed)
    seq = property(lambda self: self.session.seq)

    # -- subscriptions ------------------------------------------------------------------------------------
    def discover(self) -> None:
        """Subscribe to configured topics once a publisher appears, matching the publishers' reliability;
        look at who publishes them (:meth:`check_publishers`)."""
        self.check_publishers()
        for topic, msgtype in self.topics.items():
            infos = self.get_publishers_info_by_topic(topic)
            self._note_publishers(topic, infos)
            if topic in self._subs or not infos:
                continue
            qos = LATCHED_QOS if topic.endswith("/segments") else publishers_qos(self, topic)[0]
            if self.intake is not None:
                self._subs[topic] = self.intake.subscribe(topic, msgtype, qos)
            else:
                self._subs[topic] = self.create_subscription(
                    msg_class(msgtype), topic, lambda data, info, t=topic: self._on_raw(t, data, info), qos, raw=True
                )

    def _discover_sensor_info(self) -> None:
        """Sensor nodes publish ``~/sensor_info`` (latched JSON: serial, geometry, biases): into the manifest."""
        from std_msgs.msg import String

        for topic, types in self.get_topic_names_and_types():
            if topic.endswith("/sensor_info") and "std_msgs/msg/String" in types and topic not in self._info_subs:
                self._info_subs[topic] = self.create_subscription(
                    String, topic, lambda m, t=topic: self._on_sensor_info(t, m.data), LATCHED_QOS
                )

    def _on_sensor_info(self, topic: str, data: str) -> None:
        try:
            info = json.loads(data)
            name = str(info.pop("name", topic.rsplit("/", 2)[-2]))
            info["serial"] = str(info.get("serial", ""))
        except (ValueError, AttributeError):
            self.get_logger().error(f"{topic}: not a JSON object; sensor info not recorded")
            return
        self.session.note_sensor(name, info)

    def _on_raw(self, topic: str, data: bytes, info: dict) -> None:
        # the bag's time is when DDS received the message, not when the executor got round to it
        t = int(info.get("received_timestamp") or 0) or self.get_clock().now().nanoseconds
        self.session.put(topic, t, data)
        if topic.endswith("/sync_status") and self.topics[topic] == "microexp_msgs/msg/SyncStatus":
            self._note_sync(data)

    def _note_sync(self, data: bytes) -> None:
        """Keep each sensor's last clock-sync state (1 Hz messages) for the manifest and summary."""
        from rclpy.serialization import deserialize_message

        try:
            msg = deserialize_message(data, msg_class("microexp_msgs/msg/SyncStatus"))
        except Exception:  # noqa: BLE001 - a diagnostic: never stop the intake for it
            return

        def num(v):
            v = float(v)
            return None if v != v else v  # NaN (not estimated yet) -> null: manifest.json stays strict JSON

        for s in msg.sensors:
            self.session.sync[s.sensor] = {
                "locked": bool(s.locked),
                "offset_ms": num(s.offset_ms),
                "drift_ppm": num(s.drift_ppm),
                "jitter_us": num(s.jitter_us),
                "samples": int(s.samples),
                "outliers": int(s.outliers),
            }

    def _note_publishers(self, topic: str, infos) -> None:
        """Remember who publishes ``topic``; a topic whose publishers all vanish while the session runs (a
        sensor node died) is logged and named in the manifest's end_reason."""
        names = sorted({f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos})
        if not names:
            if self._publishers_seen.get(topic) and topic not in self._lost and self.summary is None:
                self._lost[topic] = ", ".join(self._publishers_seen[topic])
                self.get_logger().warning(f"{topic}: its publisher {self._lost[topic]} is gone")
            return
        self._lost.pop(topic, None)
        self._publishers_seen[topic] = names

    def sensors(self) -> dict:
        """The sensors whose topics had publishers: {sensor: {topic, topics, nodes}} (manifest ``sensors``)."""
        out: dict = {}
        for topic, nodes in sorted(self._publishers_seen.items()):
            parts = topic.strip("/").split("/")
            if len(parts) < 2 or parts[0] in ("recorder", "synthetic") or topic.endswith("/sync_status"):
                continue
            entry = out.setdefault(parts[0], {"topic": topic, "topics": [], "nodes": []})
            if topic.endswith("/events"):
                entry["topic"] = topic
            entry["topics"].append(topic)
            entry["nodes"] = sorted(set(entry["nodes"]) | set(nodes))
        return out

    # -- neighbours and losses ------------------------------------------------------------------------------
    def expect_publishers(self, nodes: list[str], same_process: bool = False) -> None:
        """The session names its graph: ``nodes`` (fully qualified names); ``same_process``: all of them run
        in this process (`microexp record`)."""
        self.neighbours.set_expected(list(nodes), same_process)
        self.check_publishers()

    def check_publishers(self) -> None:
        """Record who publishes each topic; a publisher outside the session's graph is warned about once
        (one line) and flags the current segment."""
        self.session.flag_foreign(self._foreign_now())

    def _foreign_now(self) -> list:
        """The publishers outside the session's graph present now (each new one warned about, one line)."""
        for topic, entry in self.neighbours.update(self.topics, self.marker_pub.topic_name):
            self.get_logger().warning(
                f"{topic} has a publisher outside this session: node {entry['node'] or '(unnamed)'} "
                f"(host {entry['host_id']}, pid {entry['pid16']}): {entry['foreign']}; recorded, segment flagged"
            )
        return self.neighbours.foreign(present_only=True)

    # -- segments -------------------------------------------------------------------------------------------
    def start_segment(self, subject: str, au: str, trial: int, lux: float, note: str = "") -> dict:
        return self.session.start_segment(subject, au, trial, lux, note)

    def stop_segment(self, status: str = "kept") -> dict | None:
        return self.session.stop_segment(status)

    def redo_segment(self, reason: str = "") -> tuple[dict | None, dict]:
        return self.session.redo_segment(reason)

    def wait_received(self, expected: dict, timeout_s: float = 60.0) -> bool:
        """Block until this recorder has taken at least ``expected[topic]`` messages of each topic (a composed
        session knows what its sensors published; a loaded executor can lag the transport by seconds)."""
        return self.session.wait_received(expected, timeout_s)

    def _marker(self, event: str, seg: dict, message: str = "") -> None:
        """Publish a change of segment ``seg`` on ``~/segments``."""
        m = SegmentMarker()
        m.header.stamp = self.get_clock().now().to_msg()
        m.event = event
        m.segment_id = seg["id"]
        m.subject, m.au, m.trial, m.lux = seg["subject"], seg["au"], seg["trial"], float(seg["lux"])
        m.status = seg["status"]
        m.message = message
        self.marker_pub.publish(m)

    # -- services ---------------------------------------------------------------------------------------------
    def _start_srv(self, req, res):
        try:
            seg = self.start_segment(req.subject, req.au, req.trial, req.lux, req.note)
            res.success, res.segment_id, res.message = True, seg["id"], f"recording {seg['name']}"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _stop_srv(self, req, res):
        try:
            seg = self.stop_segment(req.status)
            if seg is None:
                res.success, res.message = False, "no segment is recording"
            else:
                res.success, res.segment_id = True, seg["id"]
                res.bag_path, res.message = str(self.folder / seg["name"]), f"{seg['name']} {seg['status']}"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _redo_srv(self, req, res):
        try:
            old, new = self.redo_segment(req.reason)
            res.success, res.discarded_segment_id, res.segment_id = True, old["id"], new["id"]
            res.message = f"{old['name']} redone; recording {new['name']}"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _label_srv(self, req, res):
        try:
            seg = self.session.label(req.segment_id, req.subject, req.au, req.trial, req.lux, req.status)
            res.success, res.message = True, f"{seg['name']} labelled"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _take_status_srv(self, req, res):
        res.ready = True
        res.idle = self.current is None
        counts = self.session.received()
        res.topics = list(counts)
        res.counts = [int(v) for v in counts.values()]
        return res

    def _end_session_srv(self, req, res):
        try:
            self.finish(reason=req.reason or "end_session called")
            res.success, res.summary_path = True, str(self.folder / "summary.json")
            res.message = f"session {self.folder} finished"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    # -- end of session -------------------------------------------------------------------------------------
    def finish(self, sync: dict | None = None, reason: str = "finished") -> dict:
        """End the session (:meth:`~microexp.bags.recording.RecordingSession.finish`) with what the graph says:
        the publishers of each topic, the sensors, the publishers gone. ``reason`` goes to ``end_reason``."""
        if sync:
            self.session.sync.update(sync)
        gone = {n for v in self._lost.values() for n in v.split(", ")}
        return self.session.finish(
            reason,
            publishers=self.neighbours.listing(),
            sensors=self.sensors(),
            gone=gone,
            foreign=self.neighbours.foreign(),
        )

    def discard(self) -> None:
        """Remove the manifest of a session that recorded no segment (it failed before its first take), so that
        the same folder can be used again; the node then shuts down without ending a session."""
        self.session.discard()

    def publish_diagnostics(self) -> None:
        """The session's state as one DiagnosticStatus (``values``: flat keys, ``topic.<name>.received|lost``)."""
        st = self.session.status()
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: recording", hardware_id=str(self.folder))
        lost = sum(v["lost"] for v in st["topics"].values())
        seg = st["segment"]
        status.level = DiagnosticStatus.WARN if lost else DiagnosticStatus.OK
        status.message = (f"segment {seg['name']}" if seg else "no open segment") + (f"; {lost} lost" if lost else "")
        values = {
            "bytes": st["bytes"],
            "queued_bytes": st["queued_bytes"],
            "free_bytes": st["free_bytes"],
            "segments": st["segments"],
        }
        if seg:
            values.update({f"segment.{k}": v for k, v in seg.items()})
        for topic, v in st["topics"].items():
            values[f"topic.{topic}.received"] = v["received"]
            values[f"topic.{topic}.lost"] = v["lost"]
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def _log_line(self, level: str, text: str) -> None:
        """The session's lines on the node's log (rclpy wants one call site per severity)."""
        logger = self.get_logger()
        if level == "error":
            logger.error(text)
        elif level == "warning":
            logger.warning(text)
        else:
            logger.info(text)

    def destroy_node(self):
        # a recorder that shuts down (Ctrl-C, SIGTERM, end of the launch) ends its session first
        if self.summary is None:
            try:
                self.finish(reason=self.exit_reason or "recorder shut down")
            except Exception as exc:  # noqa: BLE001 - one line: what was recorded stays on disk
                self._log_line("error", f"ending the session failed: {type(exc).__name__}: {exc}")
        if self.intake is not None:
            self.intake.stop()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args)
