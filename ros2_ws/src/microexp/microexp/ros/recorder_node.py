"""Recorder node: segment-labelled rosbag2 recording of the rig's topics.

Subscribes (serialized: the CDR bytes are stored as received, never re-serialized in Python) to the
configured topics as they appear, with the reliability their publishers offer; hands every message to a
:class:`~microexp.bags.writer.SegmentWriter` (own thread, bounded queue, drops counted); one bag per
segment, opened and closed through the services ``~/start_segment``, ``~/stop_segment``,
``~/redo_segment``, ``~/label_segment``; ``~/segments`` (SegmentMarker) announces every change; the session
manifest (``manifest.json``) and, at the end, ``summary.json`` lie beside the bags.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from microexp_msgs.msg import SegmentMarker
from microexp_msgs.srv import LabelSegment, RedoSegment, StartSegment, StopSegment
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from microexp.aus import au_index, au_label
from microexp.bags.manifest import Manifest, check_pseudonym, now_iso
from microexp.bags.writer import SegmentWriter
from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.ros.base import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, declare_params, run_node

DEFAULT_TOPICS = (
    "/davis346/events|event_camera_msgs/msg/EventPacket",
    "/davis346/image_raw|sensor_msgs/msg/Image",
    "/davis346/imu|sensor_msgs/msg/Imu",
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
    Param("queue_mb", 512, "byte budget of the writer queue; beyond it messages are dropped and counted", min=1, max=65536, unit="MB"),
    Param("split_mb", 4096, "start a new bag of the same segment past this size (0 = never)", min=0, max=1_000_000, unit="MB"),
    Param("split_s", 0.0, "start a new bag of the same segment past this duration (0 = never)", min=0.0, max=86400.0, unit="s"),
    Param("source", "", "what drives the sensors (device, file, synthetic): written to the manifest"),
    Param("tail_quiet_s", 0.3, "after a stop, messages received before it are still taken until none came for this long",
          min=0.0, max=10.0, unit="s"),
    Param("tail_max_s", 10.0, "... but for at most this long", min=0.0, max=600.0, unit="s"),
    Param("intake", "poll", "how messages are taken: poll = a reader thread takes every waiting message of every "
                            "topic each poll_ms (serialized bytes, no executor work per message); executor = "
                            "subscription callbacks", choices=("poll", "executor")),
    Param("poll_ms", 1.0, "reader thread period (intake=poll)", min=0.1, max=100.0, unit="ms"),
)


def _msg_class(msgtype: str):
    pkg, kind, name = msgtype.split("/")
    module = __import__(f"{pkg}.{kind}", fromlist=[name])
    return getattr(module, name)


class RecorderNode(Node):
    def __init__(self, name: str = "recorder", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, PARAMS)
        check_pseudonym(self.p["subject"])
        self.folder = Path(self.p["out"])
        if self.folder.exists() and any(self.folder.iterdir()):
            raise MicroexpError(f"{self.get_name()}: parameter out: {self.folder} exists and is not empty; "
                                "choose a new session folder (nothing already recorded is overwritten)")
        self.topics: dict[str, str] = {}
        for entry in self.p["topics"]:
            topic, _, msgtype = entry.partition("|")
            if not msgtype or msgtype.count("/") != 2:
                raise MicroexpError(f"{self.get_name()}: parameter topics: {entry!r} is not 'topic|package/msg/Type'")
            self.topics[topic] = msgtype
        self.writer = SegmentWriter(self.folder, self.topics, storage=self.p["storage"],
                                    queue_bytes=self.p["queue_mb"] << 20, split_bytes=self.p["split_mb"] << 20,
                                    split_seconds=self.p["split_s"], on_error=self._on_writer_error,
                                    on_closed=self._on_bag_closed)
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
        self._subs = {}
        self._intake_node = None
        self._reader = None
        self._stop_intake = threading.Event()
        if self.p["intake"] == "poll":
            # A hidden helper node that no executor spins: only the reader thread takes its messages.
            import rclpy

            self._intake_node = rclpy.create_node(
                f"_{self.get_name()}_intake", namespace=self.get_namespace(), context=self.context,
                use_global_arguments=False, enable_rosout=False, start_parameter_services=False)
            self._reader = threading.Thread(target=self._poll, name="recorder_intake", daemon=True)
            self._reader.start()
        self.discover()
        self.create_timer(0.2, self.discover)
        self._info_subs: dict = {}
        self.create_timer(0.5, self._discover_sensor_info)
        self.get_logger().info(f"recording into {self.folder} ({self.p['storage']}); {len(self.topics)} topics")

    # -- subscriptions ------------------------------------------------------------------------------------
    def discover(self) -> None:
        """Subscribe to configured topics once a publisher appears, matching the publishers' reliability."""
        for topic, msgtype in self.topics.items():
            if topic in self._subs:
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
            qos = RELIABLE_QOS if reliable else SENSOR_QOS
            if topic.endswith("/segments"):
                qos = LATCHED_QOS
            if self._intake_node is not None:
                self._subs[topic] = self._intake_node.create_subscription(
                    _msg_class(msgtype), topic, lambda *_: None, qos, raw=True)
            else:
                self._subs[topic] = self.create_subscription(
                    _msg_class(msgtype), topic, lambda data, info, t=topic: self._on_raw(t, data, info), qos,
                    raw=True)

    def _discover_sensor_info(self) -> None:
        """Sensor nodes publish ``~/sensor_info`` (latched JSON: serial, geometry, biases): into the manifest."""
        from std_msgs.msg import String

        for topic, types in self.get_topic_names_and_types():
            if topic.endswith("/sensor_info") and "std_msgs/msg/String" in types and topic not in self._info_subs:
                self._info_subs[topic] = self.create_subscription(
                    String, topic, lambda m, t=topic: self._on_sensor_info(t, m.data), LATCHED_QOS)

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
        self.writer.put(topic, t, data)

    # -- segments -------------------------------------------------------------------------------------------
    def start_segment(self, subject: str, au: str, trial: int, lux: float, note: str = "") -> dict:
        if self.current is not None:
            self.stop_segment("kept")
        with self._lock:
            au = au_label(au_index(au))
            seg = self.manifest.add_segment(subject or self.p["subject"], au, trial, lux,
                                            self.get_clock().now().nanoseconds, note)
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
            seg["stop_ns"] = self.get_clock().now().nanoseconds
        # not under the lock: the writer thread reports closed bags through _on_bag_closed, which takes it
        self.writer.close_segment(wait=True, stop_ns=seg["stop_ns"], quiet_s=self.p["tail_quiet_s"],
                                  max_wait_s=self.p["tail_max_s"])
        with self._lock:
            if seg["status"] == "recording":
                seg["status"] = status
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
        self.marker_pub.publish(m)

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
            seg["status"], seg["error"] = "error", message
            seg["stop_ns"] = self.get_clock().now().nanoseconds
            self.current = None
            self.last_closed = seg
            self.manifest.save()
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

    # -- end of session -------------------------------------------------------------------------------------
    def finish(self, sync: dict | None = None) -> dict:
        """Close everything and write ``summary.json``: per topic messages, drops, bytes; duration; sync."""
        self.stop_segment("kept")
        self.writer.stop()
        duration = time.monotonic() - self.started
        topics = {t: {"received": c.received, "written": c.written, "dropped": c.dropped, "outside_segments": c.outside,
                      "bytes": c.bytes}
                  for t, c in sorted(self.writer.counters.items())}
        summary = {"session": str(self.folder), "subject": self.p["subject"], "duration_s": round(duration, 3),
                   "segments": len(self.manifest.segments),
                   "kept": sum(s["status"] == "kept" for s in self.manifest.segments),
                   "dropped": sum(c["dropped"] for c in topics.values()),
                   "bytes": sum(c["bytes"] for c in topics.values()),
                   "errors": list(self.writer.errors), "topics": topics, "sync": sync or {}}
        self.manifest.doc["finished"] = now_iso()
        if sync:
            self.manifest.doc["sync"] = sync
        self.manifest.save()
        path = self.folder / "summary.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(summary, fh, indent=2)
        return summary

    def destroy_node(self):
        self._stop_intake.set()
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        if self._intake_node is not None:
            self._intake_node.destroy_node()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(RecorderNode, args)
