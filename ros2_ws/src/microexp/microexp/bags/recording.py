"""A recording session without ROS: segments of labelled takes written by a :class:`SegmentWriter`, the session
manifest, loss accounting per segment and per topic, and the summary at the end.

The recorder node is its ROS face: it hands every message taken from DDS to :meth:`RecordingSession.put`,
turns service calls into :meth:`start_segment` / :meth:`stop_segment` / :meth:`redo_segment` / :meth:`label` /
:meth:`finish`, publishes the markers the session reports (``on_marker``) and tells it what it sees of the
graph (foreign publishers, publishers gone). Time comes from ``now_ns`` (ROS time in the node).

Loss is counted where it happens: EventPacket ``seq`` gaps (packets that never reached the recorder) and
writer-queue drops; ``lost = dropped + seq_missing``.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from microexp.aus import au_index, au_label
from microexp.bags.cdr import EVENT_PACKET, SeqTracker, event_packet_fields
from microexp.bags.manifest import Manifest, check_pseudonym, now_iso, silent_topics, write_json_atomic
from microexp.bags.writer import SegmentWriter, TopicCounters
from microexp.errors import MicroexpError

STATUSES = ("kept", "discarded", "redone")


def merge_foreign(have: list, foreign: list) -> list:
    """``have`` plus the entries of ``foreign`` (publishers outside the session) it does not list yet."""
    seen = {(e["topic"], e["gid"]) for e in have}
    return have + [
        {k: e[k] for k in ("topic", "node", "gid", "host_id", "pid16", "foreign")}
        for e in foreign
        if (e["topic"], e["gid"]) not in seen
    ]


class RecordingSession:
    """One session folder: ``topics`` ({topic: 'package/msg/Type'}) recorded into one bag per segment.

    ``writer`` holds the :class:`SegmentWriter` options (storage, queue_bytes, split_bytes, split_seconds);
    ``tail_quiet_s`` / ``tail_max_s``: after a stop, messages stamped before it are still taken until none came
    for ``tail_quiet_s`` (at most ``tail_max_s``); ``expect_topics``: topics that must deliver during every kept
    segment. ``log(level, text)`` ('info', 'warning', 'error'); ``on_marker(event, segment, message)`` for each
    change of a segment; ``foreign()`` the publishers outside the session's graph present now."""

    def __init__(
        self,
        folder: Path,
        topics: dict[str, str],
        subject: str,
        storage: str = "mcap",
        source: str = "",
        *,
        queue_bytes: int = 512 << 20,
        split_bytes: int = 0,
        split_seconds: float = 0.0,
        tail_quiet_s: float = 0.3,
        tail_max_s: float = 10.0,
        expect_topics=(),
        now_ns: Callable[[], int] = time.time_ns,
        log: Callable[[str, str], None] = lambda level, text: None,
        on_marker: Callable[[str, dict, str], None] = lambda event, seg, message: None,
        foreign: Callable[[], list] = list,
    ):
        self.folder = Path(folder)
        self.topics = dict(topics)
        self.subject = subject
        self.tail_quiet_s, self.tail_max_s = tail_quiet_s, tail_max_s
        self.expect_topics = list(expect_topics)
        self.now_ns, self.log, self.on_marker, self.foreign = now_ns, log, on_marker, foreign
        self._lock = threading.RLock()
        self.current: dict | None = None
        self.last_closed: dict | None = None
        self.summary: dict | None = None
        self.started = time.monotonic()
        self.sync: dict = {}  # sensor -> its last clock-sync state
        self.seq: dict[str, SeqTracker] = {t: SeqTracker() for t, m in self.topics.items() if m == EVENT_PACKET}
        self._gap_warned: set[str] = set()
        self._seg_base: dict = {}
        self.writer = SegmentWriter(
            self.folder,
            self.topics,
            storage=storage,
            queue_bytes=queue_bytes,
            split_bytes=split_bytes,
            split_seconds=split_seconds,
            on_error=self._on_writer_error,
            on_closed=self._on_bag_closed,
        )
        self.manifest = Manifest(self.folder, subject, storage, source=source)
        self.manifest.save()

    # -- messages ---------------------------------------------------------------------------------------------
    def put(self, topic: str, t_ns: int, data: bytes) -> None:
        """One message (CDR bytes) of ``topic`` received at ``t_ns``: its seq tracked (EventPacket), written."""
        tracker = self.seq.get(topic)
        if tracker is not None:  # packets lost before the recorder (publisher history, transport): seq gaps
            try:
                seq = event_packet_fields(data)[0]
            except ValueError:
                seq = None
            if seq is not None and tracker.update(seq) > 0 and topic not in self._gap_warned:
                self._gap_warned.add(topic)
                self.log(
                    "warning",
                    f"{topic}: packets never reached the recorder (seq jumped to {seq}, {tracker.missing} missing "
                    "so far): the publisher outran this subscriber or the transport dropped them; counted as loss "
                    "per segment in the manifest and in the summary",
                )
        self.writer.put(topic, t_ns, data)

    def note_sensor(self, name: str, info: dict) -> None:
        """What a sensor node says of itself (serial, geometry, biases): into the manifest's ``sensors``."""
        with self._lock:
            self.manifest.doc["sensors"][name] = info
            self.manifest.save()

    def flag_foreign(self, foreign: list) -> None:
        """Publishers outside the session's graph: the open segment lists them (``foreign_publishers``)."""
        seg = self.current
        if seg is not None and foreign:
            seg["foreign_publishers"] = merge_foreign(seg.get("foreign_publishers", []), foreign)

    # -- loss ---------------------------------------------------------------------------------------------------
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

    def status(self) -> dict:
        """The session now, for a status display: bytes written and queued, free bytes on the session's disk, the
        segments so far and the open one, and per topic the messages received and lost (dropped + seq_missing)."""
        loss = self._loss_snapshot()
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            free = -1
        seg = self.current
        return {
            "bytes": sum(v["bytes"] for v in loss.values()),
            "queued_bytes": self.writer.queued_bytes,
            "free_bytes": free,
            "segments": len(self.manifest.segments),
            "segment": {k: seg[k] for k in ("id", "name", "subject", "au", "trial") if k in seg} if seg else None,
            "topics": {
                t: {"received": v["received"], "lost": v["dropped"] + v["seq_missing"]} for t, v in loss.items()
            },
        }

    # -- segments -----------------------------------------------------------------------------------------------
    def start_segment(self, subject: str, au: str, trial: int, lux: float, note: str = "") -> dict:
        """Close the open segment (kept) and open a new one for (``subject``, ``au``, ``trial``, ``lux``)."""
        if self.current is not None:
            self.stop_segment("kept")
        with self._lock:
            au = au_label(au_index(au))
            seg = self.manifest.add_segment(subject or self.subject, au, trial, lux, self.now_ns(), note)
            self._seg_base = self._loss_snapshot()
            foreign = self.foreign()
            if foreign:
                seg["foreign_publishers"] = merge_foreign([], foreign)
            if seg["status"] == "error":  # no room for the manifest's reserve: not recorded
                self.log("error", seg["error"])
            else:
                self.writer.open_segment(seg["name"], start_ns=seg["start_ns"])
                seg["bags"].append(seg["name"])
                self.manifest.save()
            self.current = seg
        self.on_marker("start", seg, "")
        return seg

    def stop_segment(self, status: str = "kept") -> dict | None:
        """Close the open segment as ``status`` (kept, discarded, redone); None when none is open."""
        status = status or "kept"
        if status not in STATUSES:
            raise MicroexpError(f"status {status!r} is not one of kept, discarded, redone")
        with self._lock:
            seg = self.current
            if seg is None:
                return None
            self.current = None
            if seg["stop_ns"] is None:  # a segment closed by a write error keeps the time of the error
                seg["stop_ns"] = self.now_ns()
        # not under the lock: the writer thread reports closed bags through _on_bag_closed, which takes it
        self.writer.close_segment(
            wait=True, stop_ns=seg["stop_ns"], quiet_s=self.tail_quiet_s, max_wait_s=self.tail_max_s
        )
        foreign = self.foreign()
        if foreign:
            seg["foreign_publishers"] = merge_foreign(seg.get("foreign_publishers", []), foreign)
        with self._lock:
            silent = silent_topics(seg, self.expect_topics) if status == "kept" else ""
            if silent and seg["status"] == "recording":
                seg["status"], seg["error"] = "error", silent
                self.log("error", silent)
            if seg["status"] == "recording":
                seg["status"] = status
            seg["loss"] = self._segment_loss()
            self.last_closed = seg
            self.manifest.save()
        self.on_marker("stop", seg, "")
        return seg

    def redo_segment(self, reason: str = "") -> tuple[dict, dict]:
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
        self.on_marker("discard", target, "")
        new = self.start_segment(target["subject"], target["au"], target["trial"] + 1, target["lux"])
        return target, new

    def label(self, segment_id: int = 0, subject="", au="", trial=0, lux=-1.0, status="") -> dict:
        """Change the labels of segment ``segment_id`` (0: the open or last closed one); empty values stay."""
        with self._lock:
            seg = self.manifest.segment(segment_id) if segment_id else (self.current or self.last_closed)
            if seg is None:
                raise MicroexpError("no segment to label")
            if subject:
                seg["subject"] = check_pseudonym(subject)
            if au:
                seg["au"] = au_label(au_index(au))
            if trial:
                seg["trial"] = int(trial)
            if lux >= 0:
                seg["lux"] = float(lux)
            if status:
                if status not in ("kept", "redone", "discarded"):
                    raise MicroexpError(f"status {status!r} is not one of kept, redone, discarded")
                seg["status"] = status
            self.manifest.save()
        self.on_marker("label", seg, "")
        return seg

    def received(self) -> dict[str, int]:
        """Messages taken so far per topic."""
        return {t: c.received for t, c in self.writer.counters.items()}

    def wait_received(self, expected: dict, timeout_s: float = 60.0) -> bool:
        """Block until at least ``expected[topic]`` messages of each recorded topic were taken."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if all(self.writer.counters[t].received >= n for t, n in expected.items() if t in self.topics):
                return True
            time.sleep(0.01)
        return False

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
        self.log("error", message)
        seg = self.current
        if seg is not None:
            # the segment stays current (its writer drops until the next segment) so that the protocol's stop
            # answers as usual and the session goes on: recording resumes with the next segment
            seg["status"], seg["error"] = "error", message
            seg["stop_ns"] = self.now_ns()
            try:
                self.manifest.save()
            except MicroexpError as exc:
                self.log("error", str(exc))
            self.on_marker("error", seg, message)

    # -- end ----------------------------------------------------------------------------------------------------
    def finish(
        self,
        reason: str = "finished",
        publishers: dict | None = None,
        sensors: dict | None = None,
        gone=(),
        foreign: list | None = None,
    ) -> dict:
        """Close everything and write ``summary.json`` (per topic messages, drops, bytes, loss; duration; sync),
        the manifest's ``finished``, ``end_reason``, ``sensors`` and ``publishers``. ``gone``: publishers that
        vanished before the end (named in the reason); ``foreign``: every publisher outside the session's graph
        seen. Called once: later calls return the summary."""
        with self._lock:
            if self.summary is not None:
                return self.summary
            self.summary = {}  # ending: a concurrent call returns at once
        if gone:
            reason = f"{reason}; publisher(s) gone before the end: {', '.join(sorted(gone))}"
        self._close_last_take(reason)
        self.writer.stop()
        publishers = publishers or {}
        summary = self._summary(reason, publishers, foreign or [])
        self._finish_manifest(reason, publishers, sensors or {})
        try:
            write_json_atomic(self.folder / "summary.json", summary)
        except OSError as exc:
            summary["errors"].append(f"{self.folder / 'summary.json'}: not written: {exc.strerror or exc}")
        self.manifest.drop_reserve()
        self.summary = summary
        self.log(
            "info",
            f"session {self.folder} ended ({reason}): {summary['segments']} segments, "
            f"{summary['kept']} kept, {summary['dropped']} dropped",
        )
        return summary

    def _close_last_take(self, reason: str) -> None:
        """A take still open when the session ends otherwise than by the protocol is incomplete: error."""
        if self.current is not None and reason not in ("finished", "protocol finished"):
            seg = self.current
            self.stop_segment("kept")
            with self._lock:
                if seg["status"] == "kept":
                    seg["status"], seg["error"] = "error", f"the take did not end: {reason}"
                self.manifest.save()
        else:
            self.stop_segment("kept")

    def _summary(self, reason: str, publishers: dict, foreign: list) -> dict:
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
        segments = self.manifest.segments
        summary = {
            "session": str(self.folder),
            "subject": self.subject,
            "duration_s": round(time.monotonic() - self.started, 3),
            "segments": len(segments),
            "kept": sum(s["status"] == "kept" for s in segments),
            "dropped": sum(c["dropped"] for c in topics.values()),
            "lost": sum(c["lost"] for c in topics.values()),
            "foreign_publishers": foreign,
            "flagged_segments": [s["name"] for s in segments if s.get("foreign_publishers")],
            "bytes": sum(c["bytes"] for c in topics.values()),
            "errors": list(self.writer.errors),
            "topics": topics,
            "sync": dict(self.sync),
            "end_reason": reason,
        }
        summary["errors"] += [
            f"{s['name']}: {s['error']}"
            for s in segments
            if s.get("error") and not any(s["error"] in e for e in summary["errors"])
        ]
        return summary

    def _finish_manifest(self, reason: str, publishers: dict, sensors: dict) -> None:
        doc = self.manifest.doc
        doc["finished"] = now_iso()
        doc["end_reason"] = reason
        for name, info in doc.get("sensors", {}).items():
            sensors.setdefault(name, {}).update(info)
        doc["sensors"] = sensors
        doc["publishers"] = publishers
        if self.sync:
            doc["sync"] = dict(self.sync)
        self.manifest.save()

    def discard(self) -> None:
        """Remove the manifest of a session that recorded no segment, so that the folder can be used again."""
        self.summary = {}
        self.manifest.remove()
