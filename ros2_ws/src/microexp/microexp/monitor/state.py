"""What the monitor page shows, kept without ROS: the node feeds it plain values, the server reads snapshots.

:class:`MonitorState` is fed from the node's threads (``events``, ``image``, ``prediction``, ``au_event``,
``sync``, ``ground_truth``, ``segment``, ``recorder``) and read by the server's thread (:meth:`snapshot`,
:meth:`frames`); one lock guards it. A sensor is named by the first part of its topic (``/evk4/events`` ->
``evk4``). It is *streaming* while one of its data topics delivered within ``stale_s``, *stopped* after that,
*waiting* before its first message. Event frames are rendered on demand, at the rate the page asks for them, with
:class:`~microexp.vision.render_events.EventFrameRenderer` (the renderer node's core) and the newest face box of
the inference node drawn on the frame of the sensor it predicts from.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from microexp.vision.render_events import Colours, EventFrameRenderer, draw_box

STALE_S = 1.0  # a sensor with no message for this long is shown stopped
RATE_WINDOW_S = 1.0  # rates are counted over this much of the past
AU_EVENTS_KEPT = 50  # the newest spotted AU events on the timeline
MAX_FRAME_WIDTH = 640  # event frames wider than this are shown scaled down by an integer factor
MAX_IMAGE_WIDTH = 480  # APS / webcam images wider than this are scaled down


def clean(value):
    """``value`` with every float that JSON cannot carry (NaN, infinities) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def sensor_of(topic: str) -> str:
    """The sensor a topic belongs to: its first name part (``/evk4/events`` -> ``evk4``)."""
    parts = [p for p in topic.split("/") if p]
    return parts[0] if parts else topic


class Rate:
    """Messages and items (events) per second over the last ``RATE_WINDOW_S``."""

    def __init__(self):
        self._log: deque = deque()  # (monotonic s, items, messages)

    def add(self, now: float, items: int = 0, messages: int = 1) -> None:
        self._log.append((now, items, messages))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._log and self._log[0][0] < now - RATE_WINDOW_S:
            self._log.popleft()

    def per_s(self, now: float) -> tuple[float, float]:
        """``(messages/s, items/s)``."""
        self._trim(now)
        return sum(m for _, _, m in self._log) / RATE_WINDOW_S, sum(n for _, n, _ in self._log) / RATE_WINDOW_S


@dataclass
class Stream:
    """One data topic of a sensor (events or images)."""

    topic: str
    kind: str  #: "events" or "image"
    rate: Rate = field(default_factory=Rate)
    last: float = 0.0  #: monotonic time of the newest message (0: none yet)
    renderer: Optional[EventFrameRenderer] = None  #: kind "events": the window of the newest events
    last_events: float = 0.0  #: monotonic time of the newest packet that had events
    image: Optional[np.ndarray] = None  #: kind "image": the newest image (RGB, scaled down)
    seq: int = 0  #: bumped by every message: the page fetches a new frame when it changed
    geometry: tuple = ()  #: (width, height) of the sensor or image


def _rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """An image array of a ROS encoding as H x W x 3 RGB uint8."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if encoding.startswith("bgr"):
        return image[:, :, 2::-1]
    return image[:, :, :3]


def scaled(image: np.ndarray, max_width: int) -> tuple[np.ndarray, int]:
    """``image`` scaled down by the smallest integer factor that makes it at most ``max_width`` wide (nearest
    pixel: event colours stay as they are), and that factor."""
    k = max(1, -(-image.shape[1] // max_width))
    return (image[::k, ::k] if k > 1 else image), k


class MonitorState:
    """The monitor's view of the graph (see the module docstring). ``clock``: monotonic seconds (tests pass their
    own); ``window_us``: sensor time an event frame shows."""

    def __init__(
        self,
        window_us: int = 33_000,
        stale_s: float = STALE_S,
        colours: Optional[Colours] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window_us = int(window_us)
        self.stale_s = float(stale_s)
        self.colours = colours or Colours()
        self.clock = clock
        self._lock = threading.Lock()
        self.streams: dict[str, Stream] = {}  # topic -> stream
        self.sync_state: dict[str, dict] = {}  # sensor -> its clock estimate
        self.prediction_state: Optional[dict] = None
        self.prediction_at = 0.0
        self.au_events: deque = deque(maxlen=AU_EVENTS_KEPT)
        self.protocol: dict = {}
        self.segment_count = 0
        self.recorder_state: Optional[dict] = None
        self.recorder_at = 0.0
        self._recorder_prev: Optional[tuple] = None  # (monotonic s, bytes) of the previous recorder status
        self.disk_rate = 0.0

    # -- inputs (the node's threads) -----------------------------------------------------------------------------
    def _stream(self, topic: str, kind: str) -> Stream:
        s = self.streams.get(topic)
        if s is None or s.kind != kind:
            s = self.streams[topic] = Stream(topic, kind)
        return s

    def events(self, topic: str, events: np.ndarray, width: int, height: int, packets: int = 1) -> None:
        """Decoded events (EVENT_DTYPE) of ``packets`` packets of ``topic`` from a ``width`` x ``height`` sensor."""
        now = self.clock()
        with self._lock:
            s = self._stream(topic, "events")
            if s.renderer is None or s.geometry != (width, height):
                s.renderer = EventFrameRenderer(width, height, self.window_us, self.colours)
                s.geometry = (int(width), int(height))
            s.rate.add(now, int(events.shape[0]), int(packets))
            s.last = now
            if events.shape[0]:
                s.renderer.add(events)
                s.last_events = now
                s.seq += 1

    def count(self, topic: str, kind: str) -> None:
        """A message of ``topic`` that is not shown (an image over the decode rate): rate and age only."""
        now = self.clock()
        with self._lock:
            s = self._stream(topic, kind)
            s.rate.add(now, 1 if kind == "image" else 0)
            s.last = now

    def image(self, topic: str, image: np.ndarray, encoding: str) -> None:
        """One image (an array of a ROS ``encoding``: mono8, rgb8, bgr8 ...) of ``topic``."""
        now = self.clock()
        rgb, _ = scaled(_rgb(image, encoding), MAX_IMAGE_WIDTH)
        with self._lock:
            s = self._stream(topic, "image")
            s.rate.add(now, 1)
            s.last = now
            s.image = np.ascontiguousarray(rgb)
            s.geometry = (int(image.shape[1]), int(image.shape[0]))
            s.seq += 1

    def sync(self, sensors: list[dict]) -> None:
        """The entries of a SyncStatus (``sensor``, ``offset_ms``, ``drift_ppm``, ``jitter_us``, ``locked``)."""
        now = self.clock()
        with self._lock:
            for entry in sensors:
                name = str(entry["sensor"])
                first = self.sync_state.get(name, {}).get("first_offset_ms")
                offset = entry.get("offset_ms")
                if first is None and offset is not None and math.isfinite(offset) and entry.get("locked"):
                    first = offset
                self.sync_state[name] = dict(entry, at=now, first_offset_ms=first)

    def prediction(self, p: dict) -> None:
        """An AUPrediction: ``sensor``, ``state``, ``au_codes``, ``probabilities``, ``smoothed_probabilities``,
        ``smoothed_windows``, ``face_found``, ``crop_box``, ``latency_ms``, ``events``, ``model_id``."""
        with self._lock:
            self.prediction_state, self.prediction_at = dict(p), self.clock()

    def au_event(self, e: dict) -> None:
        """A spotted AU event: ``au``, ``confidence``, ``onset_us``, ``offset_us``, ``sensor``."""
        with self._lock:
            self.au_events.append(dict(e, at=self.clock()))

    def phase(self, phase: str) -> None:
        """The protocol's phase (demo, countdown, perform, rest, ...)."""
        with self._lock:
            self.protocol["phase"] = str(phase)
            self.protocol["at"] = self.clock()

    def ground_truth(self, g: dict) -> None:
        """The simulated subject's truth: ``subject``, ``au``, ``trial`` and ``phase`` (of its face movement:
        shown as ``movement``)."""
        with self._lock:
            # between movements the subject's truth names no AU: the segment's stays shown
            self.protocol.update({k: g[k] for k in ("subject", "au", "trial") if g.get(k) not in (None, "")})
            if "phase" in g:
                self.protocol["movement"] = g["phase"]
            self.protocol["at"] = self.clock()

    def segment(self, m: dict) -> None:
        """A SegmentMarker: ``event`` (start, stop, redo, label, ...), ``segment_id``, ``subject``, ``au``,
        ``trial``, ``status``."""
        with self._lock:
            self.segment_count = max(self.segment_count, int(m.get("segment_id", 0)))
            self.protocol.update({k: m[k] for k in ("subject", "au", "trial") if m.get(k) not in (None, "")})
            self.protocol["segment"] = int(m.get("segment_id", 0))
            self.protocol["segment_event"] = str(m.get("event", ""))
            self.protocol["segment_status"] = str(m.get("status", ""))
            self.protocol["at"] = self.clock()

    def recorder(self, r: dict) -> None:
        """The recorder's status (``bytes``, ``free_bytes``, ``queued_bytes``, ``segments``, ``segment``,
        ``topics``: {topic: {received, lost}}); the disk rate is the growth of ``bytes`` between two of them."""
        now = self.clock()
        with self._lock:
            prev = self._recorder_prev
            if prev is not None and now > prev[0] and r["bytes"] >= prev[1]:
                self.disk_rate = (r["bytes"] - prev[1]) / (now - prev[0])
            self._recorder_prev = (now, int(r["bytes"]))
            self.recorder_state, self.recorder_at = dict(r), now
            self.segment_count = max(self.segment_count, int(r.get("segments", 0)))

    # -- outputs (the server's thread) ---------------------------------------------------------------------------
    def _age(self, at: float, now: float) -> Optional[float]:
        return round(now - at, 3) if at else None

    def _sensors(self, now: float) -> dict:
        out: dict[str, dict] = {}
        lost = {}
        if self.recorder_state is not None:
            for topic, v in self.recorder_state.get("topics", {}).items():
                lost[sensor_of(topic)] = lost.get(sensor_of(topic), 0) + int(v.get("lost", 0))
        for topic, s in sorted(self.streams.items()):
            msgs, items = s.rate.per_s(now)
            row = out.setdefault(sensor_of(topic), {"streams": {}, "streaming": False})
            fresh = s.last and now - s.last <= self.stale_s
            row["streaming"] = bool(row["streaming"] or fresh)
            row["streams"][s.kind] = {
                "topic": topic,
                "rate_hz": round(msgs, 1),
                "events_per_s": round(items) if s.kind == "events" else None,
                "age_s": self._age(s.last, now),
                "geometry": list(s.geometry),
                "seq": s.seq,
            }
        for name, sync in self.sync_state.items():
            row = out.setdefault(name, {"streams": {}, "streaming": False})
            row["sync"] = {
                k: sync.get(k) for k in ("offset_ms", "drift_ppm", "jitter_us", "locked", "samples", "outliers")
            }
            first, offset = sync.get("first_offset_ms"), sync.get("offset_ms")
            # how far the sensor-to-ROS offset moved since it first locked (the offset itself is an epoch apart)
            row["sync"]["offset_change_ms"] = None if first is None or offset is None else offset - first
            row["sync"]["age_s"] = self._age(sync["at"], now)
        for name, row in out.items():
            row["state"] = "streaming" if row["streaming"] else ("stopped" if row["streams"] else "waiting")
            row["lost"] = lost.get(name)
        return out

    def _prediction(self, now: float) -> Optional[dict]:
        p = self.prediction_state
        if p is None:
            return None
        codes = [int(c) for c in p["au_codes"]]
        probs = p["smoothed_probabilities"] if int(p.get("smoothed_windows", 0)) > 0 else p["probabilities"]
        order = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")[:5]
        state = str(p.get("state", ""))
        return {
            "sensor": p.get("sensor", ""),
            "state": state if now - self.prediction_at <= self.stale_s else "stale",
            "face_found": bool(p.get("face_found", False)),
            "crop_box": [float(v) for v in p.get("crop_box", ())],
            "top": [] if state != "movement" else [[f"AU{codes[i]}", round(float(probs[i]), 4)] for i in order],
            "latency_ms": round(float(p.get("latency_ms", 0.0)), 2),
            "events": int(p.get("events", 0)),
            "model_id": str(p.get("model_id", "")),
            "age_s": self._age(self.prediction_at, now),
        }

    def snapshot(self) -> dict:
        """Everything but the images, JSON-ready. Ages are seconds before now; ``frames`` lists the sensors with
        an event frame or an image and the ``seq`` of its newest data (the page asks :meth:`frames` for it)."""
        now = self.clock()
        with self._lock:
            rec = None
            if self.recorder_state is not None:
                rec = {
                    k: self.recorder_state.get(k)
                    for k in ("bytes", "free_bytes", "queued_bytes", "segments", "segment")
                }
                rec.update(disk_rate=round(self.disk_rate), age_s=self._age(self.recorder_at, now))
            return clean(
                {
                    "sensors": self._sensors(now),
                    "prediction": self._prediction(now),
                    "au_events": [
                        {k: e.get(k) for k in ("au", "confidence", "onset_us", "offset_us", "sensor")}
                        | {"age_s": round(now - e["at"], 3)}
                        for e in self.au_events
                    ],
                    "protocol": dict(
                        {k: v for k, v in self.protocol.items() if k != "at"},
                        segments=self.segment_count,
                        age_s=self._age(self.protocol.get("at", 0.0), now),
                    ),
                    "recorder": rec,
                    "frames": {t: {"kind": s.kind, "seq": s.seq} for t, s in self.streams.items() if s.seq},
                }
            )

    def face_box(self, topic: str) -> Optional[tuple]:
        """The newest tracked face box for the event frame of ``topic`` (event pixels), or None: no fresh
        prediction, no face, or a prediction from another sensor."""
        p, now = self.prediction_state, self.clock()
        if p is None or now - self.prediction_at > self.stale_s or not p.get("face_found"):
            return None
        if p.get("sensor") and p["sensor"] != sensor_of(topic):
            return None
        box = tuple(float(v) for v in p.get("crop_box", ()))
        return box if len(box) == 4 and box[2] > box[0] and box[3] > box[1] else None

    def frame(self, topic: str) -> Optional[tuple[np.ndarray, int]]:
        """``(RGB image, seq)`` of ``topic`` now: its event frame (the last ``window_us`` of events, the face box
        outlined, dark when the stream stopped; scaled down to at most ``MAX_FRAME_WIDTH``) or its newest image;
        None when it has none."""
        now = self.clock()
        with self._lock:
            s = self.streams.get(topic)
            if s is None:
                return None
            if s.kind == "image":
                return (s.image, s.seq) if s.image is not None else None
            if s.renderer is None:
                return None
            if now - s.last_events > self.stale_s:
                s.renderer.reset()
            image = s.renderer.render()
            seq = s.seq
        image, k = scaled(image, MAX_FRAME_WIDTH)
        box = self.face_box(topic)
        if box is not None:
            draw_box(image, [v / k for v in box], self.colours.overlay, thickness=1)
        return image, seq
