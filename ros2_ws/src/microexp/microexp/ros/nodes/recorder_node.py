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
with what a simulated subject published).
Losses are counted where they happen: EventPacket ``seq`` gaps (read from the CDR bytes: packets that never
reached the recorder) and writer-queue drops, per segment (``loss`` in the manifest) and per topic in the
summary. Every publisher of a recorded topic is listed; one outside the session's graph
(``expected_publishers``, :mod:`microexp.ros.neighbours`) is warned about once and flags the segment
(``foreign_publishers``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from rclpy.qos import ReliabilityPolicy

from microexp.aus import au_index, au_label
from microexp.bags.cdr import SeqTracker, event_packet_fields
from microexp.bags.manifest import (
    Manifest,
    check_output_folder,
    check_pseudonym,
    now_iso,
    silent_topics,
    write_json_atomic,
)
from microexp.bags.writer import SegmentWriter, TopicCounters
from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.ros.base import (
    INTAKE_BEST_EFFORT_QOS,
    INTAKE_RELIABLE_QOS,
    LATCHED_QOS,
    MicroexpNode,
    ReaderThreadGroup,
    declare_params,
    run_node,
)
from microexp.ros.neighbours import PublisherWatch
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
)


EVENT_PACKET = "event_camera_msgs/msg/EventPacket"


def _merge_foreign(have: list, foreign: list) -> list:
    seen = {(e["topic"], e["gid"]) for e in have}
    return have + [
        {k: e[k] for k in ("topic", "node", "gid", "host_id", "pid16", "foreign")}
        for e in foreign
        if (e["topic"], e["gid"]) not in seen
    ]


def _msg_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    module = __import__(f"{pkg}.{kind}", fromlist=[name])
    return getattr(module, name)


class RecorderNode(MicroexpNode):
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
        self.writer = SegmentWriter(
            self.folder,
            self.topics,
            storage=self.p["storage"],
            queue_bytes=self.p["queue_mb"] << 20,
            split_bytes=self.p["split_mb"] << 20,
            split_seconds=self.p["split_s"],
            on_error=self._on_writer_error,
            on_closed=self._on_bag_closed,
        )
        self.manifest = Manifest(self.folder, self.p["subject"], self.p["storage"], source=self.p["source"])
        self.manifest.save()
        self.current: dict | None = None
        self.last_closed: dict | None = None
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self.marker_pub = self.create_publisher(SegmentMarker, "~/segments", LATCHED_QOS)
        self.create_service(StartSegment, "~/start_segment", self._start_srv)
        self.create_service(StopSegment, "~/stop_segment", self._stop_srv)
        self.create_service(RedoSegment, "~/redo_segment", self._redo_srv)
        self.create_service(LabelSegment, "~/label_segment", self._label_srv)
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv)
        self.create_service(EndSession, "~/end_session", self._end_session_srv)
        self.summary: dict | None = None
        self.exit_reason = ""
        self._sync: dict = {}  # sensor -> its last SensorSync state, from the recorded sync_status topics
        self._publishers_seen: dict = {}  # topic -> publisher node names
        self._lost: dict = {}  # topic -> the publishers that vanished during the session
        self._subs = {}
        self._intake_group = None
        self.seq: dict[str, SeqTracker] = {t: SeqTracker() for t, m in self.topics.items() if m == EVENT_PACKET}
        self._gap_warned: set[str] = set()  # topics whose first seq gap was logged (one line each)
        self.neighbours = PublisherWatch(
            self, self.p["expected_publishers"], allow_remote=self.p["allow_remote_publishers"]
        )
        self._seg_base: dict = {}
        self._reader = None
        self._stop_intake = threading.Event()
        if self.p["intake"] == "poll":
            # The subscriptions are this node's, in a callback group that executors leave alone: only the
            # reader thread takes their messages.
            self._intake_group = ReaderThreadGroup()
            self._reader = threading.Thread(target=self._poll, name="recorder_intake", daemon=True)
            self._reader.start()
        self.discover()
        self.create_timer(0.2, self.discover)
        self._info_subs: dict = {}
        self.create_timer(0.5, self._discover_sensor_info)
        self.get_logger().info(f"recording into {self.folder} ({self.p['storage']}); {len(self.topics)} topics")

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
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            qos = INTAKE_RELIABLE_QOS if reliable else INTAKE_BEST_EFFORT_QOS
            if topic.endswith("/segments"):
                qos = LATCHED_QOS
            if self._intake_group is not None:
                self._subs[topic] = self.create_subscription(
                    _msg_class(msgtype), topic, lambda *_: None, qos, raw=True, callback_group=self._intake_group
                )
            else:
                self._subs[topic] = self.create_subscription(
                    _msg_class(msgtype), topic, lambda data, info, t=topic: self._on_raw(t, data, info), qos, raw=True
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
        with self._lock:
            self.manifest.doc["sensors"][name] = info
            self.manifest.save()

    def _poll(self) -> None:
        """intake=poll: every poll_ms, take every waiting message of every subscribed topic (as CDR bytes)."""
        period = self.p["poll_ms"] / 1000.0
        while not self._stop_intake.is_set():
            for topic, sub in list(self._subs.items()):
                handle = sub.handle
                while True:
                    try:
                        with handle:
                            taken = handle.take_message(sub.msg_type, True)
                    except Exception:  # noqa: BLE001 - the subscription is being destroyed
                        return
                    if taken is None:
                        break
                    self._on_raw(topic, taken[0], taken[1])
            self._stop_intake.wait(period)

    def _on_raw(self, topic: str, data: bytes, info: dict) -> None:
        # the bag's time is when DDS received the message, not when the executor got round to it
        t = int(info.get("received_timestamp") or 0) or self.get_clock().now().nanoseconds
        tracker = self.seq.get(topic)
        if tracker is not None:  # packets lost before the recorder (publisher history, transport): seq gaps
            try:
                seq = event_packet_fields(data)[0]
            except ValueError:
                seq = None
            if seq is not None and tracker.update(seq) > 0 and topic not in self._gap_warned:
                self._gap_warned.add(topic)
                self.get_logger().warning(
                    f"{topic}: packets never reached the recorder (seq jumped to {seq}, {tracker.missing} missing "
                    "so far): the publisher outran this subscriber or the transport dropped them; counted as loss "
                    "per segment in the manifest and in the summary"
                )
        self.writer.put(topic, t, data)
        if topic.endswith("/sync_status") and self.topics[topic] == "microexp_msgs/msg/SyncStatus":
            self._note_sync(data)

    def _note_sync(self, data: bytes) -> None:
        """Keep each sensor's last clock-sync state (1 Hz messages) for the manifest and summary."""
        from rclpy.serialization import deserialize_message

        try:
            msg = deserialize_message(data, _msg_class("microexp_msgs/msg/SyncStatus"))
        except Exception:  # noqa: BLE001 - a diagnostic: never stop the intake for it
            return

        def num(v):
            v = float(v)
            return None if v != v else v  # NaN (not estimated yet) -> null: manifest.json stays strict JSON

        for s in msg.sensors:
            self._sync[s.sensor] = {
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
        (one line) and flags the current segment. Skipped once the node's context is shut down (the session
        ending on Ctrl-C or SIGTERM): the graph can no longer be asked."""
        if not self.context.ok():
            return
        for topic, entry in self.neighbours.update(self.topics, self.marker_pub.topic_name):
            self.get_logger().warning(
                f"{topic} has a publisher outside this session: node {entry['node'] or '(unnamed)'} "
                f"(host {entry['host_id']}, pid {entry['pid16']}): {entry['foreign']}; recorded, segment flagged"
            )
        foreign = self.neighbours.foreign(present_only=True)
        seg = self.current
        if seg is not None and foreign:
            seg["foreign_publishers"] = _merge_foreign(seg.get("foreign_publishers", []), foreign)

    def _loss_snapshot(self) -> dict:
        seq, out = self.seq, {}
        for t in self.topics:
            c = self.writer.counters.get(t) or TopicCounters()  # get: never adds a topic to the summary
            out[t] = {
                "received": c.received,
                "written": c.written,
                "dropped": c.dropped,
                "outside": c.outside,
                "bytes": c.bytes,
                "seq_missing": seq[t].missing if t in seq else 0,
                "seq_gaps": seq[t].gaps if t in seq else 0,
            }
        return out

    def _segment_loss(self) -> dict:
        """Per topic of the segment: received (taken by the recorder), written, bytes, dropped (writer queue
        over its budget or a failed write), seq_missing (EventPackets that never reached the recorder: the
        publisher's history or the transport lost them) and lost = dropped + seq_missing."""
        now, base = self._loss_snapshot(), self._seg_base
        out = {}
        for t, v in now.items():
            d = {k: n - base.get(t, {}).get(k, 0) for k, n in v.items()}
            if any(d.values()):
                d["lost"] = d["dropped"] + d["seq_missing"]
                out[t] = d
        return out

    # -- segments -------------------------------------------------------------------------------------------
    def start_segment(self, subject: str, au: str, trial: int, lux: float, note: str = "") -> dict:
        if self.current is not None:
            self.stop_segment("kept")
        with self._lock:
            au = au_label(au_index(au))
            seg = self.manifest.add_segment(
                subject or self.p["subject"], au, trial, lux, self.get_clock().now().nanoseconds, note
            )
            self._seg_base = self._loss_snapshot()
            foreign = self.neighbours.foreign(present_only=True)
            if foreign:
                seg["foreign_publishers"] = _merge_foreign([], foreign)
            if seg["status"] == "error":  # no room for the manifest's reserve: not recorded
                self.get_logger().error(seg["error"])
            else:
                self.writer.open_segment(seg["name"], start_ns=seg["start_ns"])
                seg["bags"].append(seg["name"])
                self.manifest.save()
            self.current = seg
        self._marker("start", seg)
        return seg

    def stop_segment(self, status: str = "kept") -> dict | None:
        status = status or "kept"
        if status not in ("kept", "discarded", "redone"):
            raise MicroexpError(f"status {status!r} is not one of kept, discarded, redone")
        with self._lock:
            seg = self.current
            if seg is None:
                return None
            self.current = None
            if seg["stop_ns"] is None:  # a segment closed by a write error keeps the time of the error
                seg["stop_ns"] = self.get_clock().now().nanoseconds
        # not under the lock: the writer thread reports closed bags through _on_bag_closed, which takes it
        self.writer.close_segment(
            wait=True, stop_ns=seg["stop_ns"], quiet_s=self.p["tail_quiet_s"], max_wait_s=self.p["tail_max_s"]
        )
        self.check_publishers()
        foreign = self.neighbours.foreign(present_only=True)
        if foreign:
            seg["foreign_publishers"] = _merge_foreign(seg.get("foreign_publishers", []), foreign)
        with self._lock:
            silent = silent_topics(seg, self.p["expect_topics"]) if status == "kept" else ""
            if silent and seg["status"] == "recording":
                seg["status"], seg["error"] = "error", silent
                self.get_logger().error(silent)
            if seg["status"] == "recording":
                seg["status"] = status
            seg["loss"] = self._segment_loss()
            self.last_closed = seg
            self.manifest.save()
        self._marker("stop", seg)
        return seg

    def redo_segment(self, reason: str = "") -> tuple[dict | None, dict]:
        """Mark the current (or last closed) take as redone and start a new take with the same labels."""
        target = self.current or self.last_closed
        if target is None:
            raise MicroexpError("nothing to redo: no segment was recorded yet")
        if self.current is not None:
            self.stop_segment("redone")
        with self._lock:
            target["status"] = "redone"
            if reason:
                target["note"] = (target.get("note", "") + f" redo: {reason}").strip()
            self.manifest.save()
        self._marker("discard", target)
        new = self.start_segment(target["subject"], target["au"], target["trial"] + 1, target["lux"])
        return target, new

    def wait_received(self, expected: dict, timeout_s: float = 60.0) -> bool:
        """Block until this recorder has taken at least ``expected[topic]`` messages of each topic (a composed
        session knows what its sensors published; a loaded executor can lag the transport by seconds)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(self.writer.counters[t].received >= n for t, n in expected.items() if t in self.topics):
                return True
            time.sleep(0.01)
        return False

    def _marker(self, event: str, seg: dict, message: str = "") -> None:
        m = SegmentMarker()
        m.header.stamp = self.get_clock().now().to_msg()
        m.event = event
        m.segment_id = seg["id"]
        m.subject, m.au, m.trial, m.lux = seg["subject"], seg["au"], seg["trial"], float(seg["lux"])
        m.status = seg["status"]
        m.message = message
        try:
            self.marker_pub.publish(m)
        except Exception:  # noqa: BLE001 - the context is shut down (Ctrl-C): the manifest still says it
            if self.context.ok():
                raise

    def _on_bag_closed(self, bag) -> None:
        with self._lock:
            for seg in self.manifest.segments:
                if bag.segment == seg["name"]:
                    name = Path(bag.path).name
                    if name not in seg["bags"]:
                        seg["bags"].append(name)
                    for t, c in bag.counts.items():
                        seg["messages"][t] = seg["messages"].get(t, 0) + c
                    if bag.error:
                        seg["status"], seg["error"] = "error", bag.error
            self.manifest.save()

    def _on_writer_error(self, message: str) -> None:
        self.get_logger().error(message)
        seg = self.current
        if seg is not None:
            # the segment stays current (its writer drops until the next segment) so that the protocol's stop
            # answers as usual and the session goes on: recording resumes with the next segment
            seg["status"], seg["error"] = "error", message
            seg["stop_ns"] = self.get_clock().now().nanoseconds
            try:
                self.manifest.save()
            except MicroexpError as exc:
                self.get_logger().error(str(exc))
            self._marker("error", seg, message)

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
            with self._lock:
                seg = self.manifest.segment(req.segment_id) if req.segment_id else (self.current or self.last_closed)
                if seg is None:
                    raise MicroexpError("no segment to label")
                if req.subject:
                    seg["subject"] = check_pseudonym(req.subject)
                if req.au:
                    seg["au"] = au_label(au_index(req.au))
                if req.trial:
                    seg["trial"] = int(req.trial)
                if req.lux >= 0:
                    seg["lux"] = float(req.lux)
                if req.status:
                    if req.status not in ("kept", "redone", "discarded"):
                        raise MicroexpError(f"status {req.status!r} is not one of kept, redone, discarded")
                    seg["status"] = req.status
                self.manifest.save()
            self._marker("label", seg)
            res.success, res.message = True, f"{seg['name']} labelled"
        except MicroexpError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _take_status_srv(self, req, res):
        res.ready = True
        res.idle = self.current is None
        counts = {t: c.received for t, c in self.writer.counters.items()}
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
        """Close everything and write ``summary.json``: per topic messages, drops, bytes; duration; sync.
        Called once (the protocol's end_session, or the node's shutdown): later calls return the summary.
        ``reason`` (what ended the session) goes to the manifest's ``end_reason``."""
        with self._lock:
            if self.summary is not None:
                return self.summary
            self.summary = {}  # ending: a concurrent call returns at once
        if self._lost:
            nodes = sorted({n for v in self._lost.values() for n in v.split(", ")})
            reason = f"{reason}; publisher(s) gone before the end: {', '.join(nodes)}"
        if self.current is not None and reason not in ("finished", "protocol finished"):
            # a take still open when the session was ended otherwise than by the protocol: it is incomplete
            seg = self.current
            self.stop_segment("kept")
            with self._lock:
                if seg["status"] == "kept":
                    seg["status"], seg["error"] = "error", f"the take did not end: {reason}"
                self.manifest.save()
        else:
            self.stop_segment("kept")
        self.writer.stop()
        sync = sync or dict(self._sync)
        duration = time.monotonic() - self.started
        publishers = self.neighbours.listing()
        topics = {}
        for t, c in sorted(self.writer.counters.items()):
            seq = self.seq.get(t)
            topics[t] = {
                "received": c.received,
                "written": c.written,
                "dropped": c.dropped,
                "outside_segments": c.outside,
                "bytes": c.bytes,
                "seq_gaps": seq.gaps if seq else None,
                "seq_missing": seq.missing if seq else None,
                "lost": c.dropped + (seq.missing if seq else 0),
                "publishers": publishers.get(t, []),
            }
        foreign = self.neighbours.foreign()
        summary = {
            "session": str(self.folder),
            "subject": self.p["subject"],
            "duration_s": round(duration, 3),
            "segments": len(self.manifest.segments),
            "kept": sum(s["status"] == "kept" for s in self.manifest.segments),
            "dropped": sum(c["dropped"] for c in topics.values()),
            "lost": sum(c["lost"] for c in topics.values()),
            "foreign_publishers": foreign,
            "flagged_segments": [s["name"] for s in self.manifest.segments if s.get("foreign_publishers")],
            "bytes": sum(c["bytes"] for c in topics.values()),
            "errors": list(self.writer.errors),
            "topics": topics,
            "sync": sync or {},
            "end_reason": reason,
        }
        summary["errors"] += [
            f"{s['name']}: {s['error']}"
            for s in self.manifest.segments
            if s.get("error") and not any(s["error"] in e for e in summary["errors"])
        ]
        self.manifest.doc["finished"] = now_iso()
        self.manifest.doc["end_reason"] = reason
        sensors = self.sensors()  # the sensors whose topics had publishers, with what they said of themselves
        for name, info in self.manifest.doc.get("sensors", {}).items():
            sensors.setdefault(name, {}).update(info)
        self.manifest.doc["sensors"] = sensors
        self.manifest.doc["publishers"] = publishers
        if sync:
            self.manifest.doc["sync"] = sync
        self.manifest.save()
        try:
            write_json_atomic(self.folder / "summary.json", summary)
        except OSError as exc:
            summary["errors"].append(f"{self.folder / 'summary.json'}: not written: {exc.strerror or exc}")
        self.manifest.drop_reserve()
        self.summary = summary
        self._log_line(
            f"session {self.folder} ended ({reason}): {summary['segments']} segments, "
            f"{summary['kept']} kept, {summary['dropped']} dropped"
        )
        return summary

    def discard(self) -> None:
        """Remove the manifest of a session that recorded no segment (it failed before its first take), so that
        the same folder can be used again; the node then shuts down without ending a session."""
        self.summary = {}
        self.manifest.remove()

    def _log_line(self, text: str, error: bool = False) -> None:
        """Log, also after the context shut down (Ctrl-C), when rosout can no longer take it."""
        if self.context.ok():
            (self.get_logger().error if error else self.get_logger().info)(text)
        else:
            try:
                print(f"[{'ERROR' if error else 'INFO'}] [{self.get_name()}]: {text}", file=sys.stderr, flush=True)
            except OSError:  # the terminal of a ros2 launch that is gone
                pass

    def destroy_node(self):
        # a recorder that shuts down (Ctrl-C, SIGTERM, end of the launch) ends its session first
        if self.summary is None:
            try:
                self.finish(reason=self.exit_reason or "recorder shut down")
            except Exception as exc:  # noqa: BLE001 - one line: what was recorded stays on disk
                self._log_line(f"ending the session failed: {type(exc).__name__}: {exc}", error=True)
        self._stop_intake.set()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args)
