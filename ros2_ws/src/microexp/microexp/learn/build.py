"""Recorded bags -> the clip dataset of :mod:`microexp.learn.dataset` (``microexp dataset``; no rclpy).

Each kept segment of a session (``manifest.json``), or each bare bag, becomes one clip:

1. **Read** the bag once: EventPacket streams decoded with the payload codecs (one stateful decoder per
   stream, :class:`microexp.events.stream.StreamReader`), DAVIS APS and webcam images, the synthetic
   ground truth and the recorder's segment markers.
2. **Time grid.** Every EventPacket's header stamp is the ROS time of its first event (the drivers and the
   synthetic node stamp packets that way), so ``offset = median(stamp_ns - 1000 * t_first_us)`` over the
   packets maps a sensor's µs clock onto ROS time. The clip starts at the first event of the reference
   sensor (DAVIS346, else EVK4) and has ``T = span // 33 ms + 1`` slices; slice k covers
   ``[start + k*33 ms, start + (k+1)*33 ms)`` of ROS time, i.e. ``[start - offset_s + k*33 ms, ...)`` on
   each event sensor's own clock. Frames (APS, webcam) are picked per slice as the one whose stamp
   (exposure midpoint on ROS time) is nearest the slice centre.
3. **Face box** (paper §3.4): MTCNN (:class:`microexp.vision.face.MtcnnDetector`, the live node's detector)
   on every ``detect_every``-th DAVIS APS frame of the clip; the box is the per-corner median of the hits,
   held over the whole clip (head turns move the face by less than the crop margin), then made square with
   ``margin`` (1.2, the live node's ``face_margin``) by :func:`microexp.vision.crop.square_box`.
   The EVK4 has no frames: its box is the DAVIS box mapped by a per-axis scale and offset
   (:class:`microexp.infer.face.BoxMap`, the live node's ``frame_to_events``), by default the geometry of
   the synthetic rig (:func:`synthetic_evk4_map`); for a real rig pass the calibrated mapping. The webcam
   gets its own MTCNN box. When MTCNN finds no face in a clip, the event sensor's box falls back to the
   bounding box of event activity (pixels with at least 3 events and 4x the mean count; 2nd-98th
   percentiles) and the webcam's to a centred square of 45 % of the frame height; ``box_source`` in the
   index says which (``mtcnn``, ``mapped:davis346``, ``events``, ``centre``).
4. **Arrays**: Eq. (1) frames of each event sensor per slice, cropped and resized to 64 x 64: computed from
   each slice's events by :func:`microexp.vision.crop.crop_events`, the live node's crop, which equals
   :func:`microexp.vision.crop.crop_resize` of :func:`microexp.events.frames.event_frames` (tested); APS and
   webcam crops through ``crop_resize``; see :mod:`microexp.learn.dataset` for the list.

A dataset folder can be built in several runs: clips already in its index are skipped (``--overwrite``
rebuilds them).

Damaged input: every bag is verified before it is read (MCAP chunk CRCs, SQLite integrity_check); a damaged
bag's clip is not built. A truncated bag (killed recorder, file cut off) is skipped too unless
``allow_truncated`` (``--allow-truncated``), which builds it and marks its index entry ``"truncated": REASON``.
A segment that the recorder flagged foreign (its manifest's ``foreign_publishers``: another publisher on the
domain wrote into it) is skipped likewise unless ``--allow-foreign``, which marks its entry ``"foreign": [...]``.
A session whose manifest.json is unreadable is skipped as a whole. Each skip is one line on stderr, an entry
of the summary's ``failed`` list and of the index's ``skipped`` list (of the latest run); the command's exit
status is 1 when that list is not empty. The output folder
is checked (a writable folder) before any work.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from microexp.aus import au_index, au_label
from microexp.bags.cdr import EVENT_PACKET
from microexp.errors import FormatError, MicroexpError, ParameterError
from microexp.events.activity import box_count, movement_peak
from microexp.events.dtype import DEFAULT_SLICE_US
from microexp.events.stream import Packet, StreamReader
from microexp.learn.dataset import EVENT_ARRAYS, load_or_create_index, safe_name, save_array, save_index

DEFAULT_TOPICS = {
    "davis346": "/davis346/events",
    "evk4": "/evk4/events",
    "aps": "/davis346/image_raw",
    "webcam": "/webcam/image_raw",
    "ground_truth": "/synthetic/ground_truth",
    "markers": "/recorder/segments",
}


def synthetic_evk4_map() -> tuple[float, float, float, float]:
    """``(sx, sy, ox, oy)`` mapping DAVIS346 pixels to EVK4 pixels for the synthetic rig.

    Both cameras see the head with a known size (``face_frac`` of the frame height) and centre (frame centre
    plus the mounting parallax ``dx, dy``; :mod:`microexp.synth.render`). For a face at the nominal position,
    continuous pixel coordinates map by ``x_e = cx_e + (s_e / s_d) (x_d - cx_d)``: the scale is the ratio
    of the pixel sizes of a face unit, the offset follows from the two centres. Subjects sit up to ±3 % of
    the frame off-centre, which moves the EVK4 box by up to ±13 px (about 3 % of its side).
    """
    from microexp.synth.render import DAVIS346_VIEW as d
    from microexp.synth.render import EVK4_VIEW as e

    s = (e.face_frac * e.height) / (d.face_frac * d.height)
    cxd, cyd = d.width / 2.0 + d.dx * d.width, d.height / 2.0 + d.dy * d.height
    cxe, cye = e.width / 2.0 + e.dx * e.width, e.height / 2.0 + e.dy * e.height
    return (s, s, cxe - s * cxd, cye - s * cyd)


def parse_map(text: str) -> tuple[float, float, float, float]:
    """``"synthetic"`` or ``"sx,sy,ox,oy"``."""
    if text.strip().lower() == "synthetic":
        return synthetic_evk4_map()
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
        raise ParameterError(f"--evk4-map {text!r}: expected 'synthetic' or 'sx,sy,ox,oy' (scales > 0)")
    return values  # type: ignore[return-value]


@dataclass
class BuildOptions:
    """How clips are made (the defaults are the paper's and the live node's)."""

    slice_us: int = DEFAULT_SLICE_US
    size: int = 64
    margin: float = 1.2
    detect_every: int = 4
    min_probability: float = 0.9
    evk4_map: tuple = field(default_factory=synthetic_evk4_map)
    sensors: tuple = EVENT_ARRAYS
    webcam: bool = True
    max_slices: Optional[int] = None
    topics: dict = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    overwrite: bool = False
    noise_filter_us: int = 0  # background-activity filter window (events.filters); 0 = off (the paper's path)
    face_box: str = "mtcnn"  # MTCNN's box (paper §3.4) or "landmarks" (vision.face.landmark_box)
    allow_truncated: bool = False  # build clips of truncated bags (flagged "truncated" in the index)
    allow_foreign: bool = False  # build segments flagged foreign by the recorder (flagged "foreign" in the index)


@dataclass
class SegmentSource:
    """One clip to build: where its bag(s) are and what the recording says about it."""

    session: str
    segment: str
    bags: list
    subject: Optional[str] = None
    au: Optional[str] = None
    trial: Optional[int] = None
    lux: Optional[float] = None
    segment_id: Optional[int] = None
    foreign: list = field(default_factory=list)  # the manifest's foreign_publishers of the segment

    @property
    def clip_id(self) -> str:
        return safe_name(f"{self.session}__{self.segment}")


def find_sources(paths: Sequence, problems: Optional[list] = None) -> list[SegmentSource]:
    """Segments to build from session folders (kept segments of ``manifest.json``), bare bags, or folders
    of sessions. With ``problems`` (a list), a session whose manifest cannot be read is appended to it
    (``{"clip": session, "error": ...}``) and skipped instead of raising."""
    from microexp.bags import manifest as mf
    from microexp.bags.session import is_bag

    out: list[SegmentSource] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FormatError(p, "does not exist")
        if (p / mf.MANIFEST).exists():
            try:
                doc = mf.load(p)
            except MicroexpError as exc:
                if problems is None:
                    raise
                problems.append({"clip": p.name, "error": str(exc)})
                continue
            for seg in doc["segments"]:
                if seg["status"] != "kept" or not seg["bags"]:
                    continue
                out.append(
                    SegmentSource(
                        session=p.name,
                        segment=seg["name"],
                        bags=[p / b for b in seg["bags"]],
                        subject=seg["subject"],
                        au=seg["au"],
                        trial=int(seg["trial"]),
                        lux=float(seg["lux"]) if seg.get("lux") else None,
                        segment_id=seg["id"],
                        foreign=list(seg.get("foreign_publishers") or []),
                    )
                )
        elif is_bag(p):
            out.append(
                SegmentSource(session=p.parent.name or "bags", segment=p.stem if p.is_file() else p.name, bags=[p])
            )
        elif p.is_dir():
            sessions = sorted(c for c in p.iterdir() if (c / mf.MANIFEST).exists())
            if not sessions:
                raise FormatError(p, "is neither a session (manifest.json), a bag, nor a folder of sessions")
            out.extend(find_sources(sessions, problems))
        else:
            raise FormatError(p, "is neither a session folder (manifest.json) nor a rosbag2 bag")
    return out


def check_foreign(src: SegmentSource, allow: bool) -> None:
    """A segment that publishers outside the session's graph wrote into is not built unless ``allow``."""
    from microexp.bags.manifest import foreign_note

    note = foreign_note(src.foreign)
    if note and not allow:
        raise FormatError(
            src.bags[0], f"segment flagged foreign: {note}; skipped (--allow-foreign builds it, flagged in the index)"
        )


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class EventStream:
    width: int = 0
    height: int = 0
    chunks: list = field(default_factory=list)
    packets: list = field(default_factory=list)  # (t_first_us, stamp_ns)
    seq_missing: int = 0

    def events(self) -> np.ndarray:
        from microexp.events.dtype import EVENT_DTYPE, concat_events, take_events

        if not self.chunks:
            return np.zeros(0, dtype=EVENT_DTYPE)
        ev = concat_events(self.chunks)
        if len(ev) > 1 and np.any(np.diff(ev["t"]) < 0):
            ev = take_events(ev, np.argsort(ev["t"], kind="stable"))
        return ev

    def offset_ns(self) -> Optional[int]:
        """Sensor µs -> ROS ns: ``ros_ns = 1000 * t_us + offset``."""
        if not self.packets:
            return None
        a = np.asarray(self.packets, dtype=np.int64)
        return int(np.median(a[:, 1] - a[:, 0] * 1000))


@dataclass
class SegmentData:
    """Everything of one segment that the builder uses."""

    streams: dict = field(default_factory=dict)  # sensor -> EventStream
    frames: dict = field(default_factory=dict)  # "aps" / "webcam" -> list of (stamp_ns, raw, msgtype)
    ground_truth: list = field(default_factory=list)
    markers: list = field(default_factory=list)
    truncated: str = ""  # why a bag of the segment is truncated ('' when none is)


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def read_segment(
    bags: Sequence, topics: dict, sensors: Sequence[str], webcam: bool = True, allow_truncated: bool = True
) -> SegmentData:
    """One pass over the bag(s) of a segment, after verifying them (FormatError when damaged, or when
    truncated and not ``allow_truncated``)."""
    from microexp.bags.reader import Bag

    role_of = {topics[s]: s for s in sensors if s in topics}
    frame_roles = {"aps": topics.get("aps")}
    if webcam:
        frame_roles["webcam"] = topics.get("webcam")
    role_of.update({t: r for r, t in frame_roles.items() if t})
    for r in ("ground_truth", "markers"):
        if topics.get(r):
            role_of[topics[r]] = r
    data = SegmentData()
    readers: dict = {}  # role -> StreamReader, across the segment's bags
    for bag_path in bags:
        with Bag(bag_path) as bag:
            bag.verify()
            if bag.truncated:
                if not allow_truncated:
                    raise FormatError(
                        bag_path,
                        f"truncated bag ({bag.truncation}): skipped (--allow-truncated "
                        "builds it, flagged in the index)",
                    )
                data.truncated = data.truncated or bag.truncation
            present = [t for t in bag.topics() if t in role_of]
            for topic, msgtype, _, raw in bag.messages(present):
                role = role_of[topic]
                if role in ("aps", "webcam"):
                    # frames are decoded only when a slice needs them: keep the CDR bytes and the stamp
                    msg_stamp = _frame_stamp(bag, raw, msgtype)
                    data.frames.setdefault(role, []).append((msg_stamp, raw, msgtype))
                    continue
                msg = bag.deserialize(raw, msgtype)
                if role == "ground_truth":
                    data.ground_truth.append(
                        {
                            "stamp_ns": _stamp_ns(msg),
                            "subject": str(msg.subject),
                            "au": str(msg.au),
                            "trial": int(msg.trial),
                            "phase": str(msg.phase),
                            "intensity": float(msg.intensity),
                            "lux": float(msg.lux),
                        }
                    )
                    continue
                if role == "markers":
                    data.markers.append(
                        {
                            "event": str(msg.event),
                            "subject": str(msg.subject),
                            "au": str(msg.au),
                            "trial": int(msg.trial),
                            "lux": float(msg.lux),
                            "id": int(msg.segment_id),
                        }
                    )
                    continue
                if msgtype != EVENT_PACKET:
                    continue
                stream = data.streams.setdefault(role, EventStream())
                packet = Packet.from_msg(msg)
                if role not in readers:
                    readers[role] = StreamReader(strict=True)
                decoded = readers[role].feed(packet)
                events = decoded.events
                stream.width, stream.height = packet.width, packet.height
                stream.seq_missing += decoded.missing
                if len(events):
                    stream.chunks.append(events)
                    stream.packets.append((int(events["t"][0]), packet.stamp_ns))
    for frames in data.frames.values():
        frames.sort(key=lambda f: f[0])
    return data


def _frame_stamp(bag, raw: bytes, msgtype: str) -> int:
    return _stamp_ns(bag.deserialize(raw, msgtype))


def _decode_image(raw: bytes, msgtype: str) -> np.ndarray:
    """HxW (mono) or HxWx3 RGB uint8 of a serialized sensor_msgs/Image."""
    from microexp.bags.reader import Bag
    from microexp.vision.image import image_array, to_rgb

    msg = Bag.deserialize(raw, msgtype)
    img = image_array(msg)
    if img.ndim == 2 or str(msg.encoding) in ("mono8", "mono16", "8UC1"):
        return img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8)
    return to_rgb(img, str(msg.encoding))


# ---------------------------------------------------------------------------------------------- boxes


class Detectors:
    """MTCNN detectors, one per minimum face size (a 1080p webcam needs a coarser pyramid than the APS)."""

    def __init__(self, min_probability: float, box: str = "mtcnn"):
        self.min_probability = min_probability
        self.box = box
        self._by_size: dict = {}

    def __call__(self, image: np.ndarray):
        from microexp.vision.face import MtcnnDetector

        min_face = max(20, int(0.12 * min(image.shape[:2])))
        if min_face not in self._by_size:
            self._by_size[min_face] = MtcnnDetector(
                min_probability=self.min_probability, min_face_size=min_face, box=self.box
            )
        return self._by_size[min_face](image)


def detect_box(frames: list, lo_ns: int, hi_ns: int, every: int, detector) -> tuple[Optional[tuple], int, int]:
    """Per-corner median of the MTCNN boxes of every ``every``-th frame stamped in [lo_ns, hi_ns]:
    ``(box or None, hits, tries)``."""
    inside = [f for f in frames if lo_ns <= f[0] <= hi_ns] or frames
    hits, tries = [], 0
    for _stamp, raw, msgtype in inside[:: max(1, every)]:
        tries += 1
        box = detector(_decode_image(raw, msgtype))
        if box is not None:
            hits.append(box)
    if not hits:
        return None, 0, tries
    return tuple(float(v) for v in np.median(np.asarray(hits, dtype=np.float64), axis=0)), len(hits), tries


def activity_box(events: np.ndarray, width: int, height: int) -> Optional[tuple]:
    """Bounding box of where events concentrate (ground-truth-free fallback when MTCNN finds no face):
    pixels with at least 3 events and 4x the mean count, 2nd-98th percentiles of their coordinates."""
    if not len(events):
        return None
    counts = np.bincount(events["y"].astype(np.int64) * width + events["x"].astype(np.int64), minlength=width * height)[
        : width * height
    ].reshape(height, width)
    thr = max(3.0, 4.0 * float(counts.mean()))
    ys, xs = np.nonzero(counts >= thr)
    if len(xs) < 10:
        return None
    w = counts[ys, xs].astype(np.float64)

    def wq(v, q):
        order = np.argsort(v)
        c = np.cumsum(w[order]) / w.sum()
        return float(v[order][min(len(v) - 1, np.searchsorted(c, q))])

    return (wq(xs, 0.02), wq(ys, 0.02), wq(xs, 0.98) + 1.0, wq(ys, 0.98) + 1.0)


def centre_box(width: int, height: int, frac: float = 0.45) -> tuple:
    side = frac * height
    return (width / 2 - side / 2, height / 2 - side / 2, width / 2 + side / 2, height / 2 + side / 2)


# ---------------------------------------------------------------------------------------------- the clip


def slice_windows(events: np.ndarray, t0_us: int, n: int, slice_us: int) -> list:
    """The events of slices ``[t0_us + k*slice_us, t0_us + (k+1)*slice_us)``, k = 0 .. n-1, cut by the live
    node's :class:`microexp.events.frames.EventSlicer` (events before ``t0_us`` or after the last slice are
    left out; a slice without events is an empty array)."""
    from microexp.events.frames import EventSlicer

    slicer = EventSlicer(slice_us, t_start=t0_us)
    windows = slicer.push(events)[:n]
    if len(windows) < n:
        windows += slicer.advance(t0_us + n * slice_us)
    return [part for _, _, part in windows]


def _event_crops(events: np.ndarray, width: int, height: int, t0_us: int, n: int, slice_us: int, box, size: int):
    """(crops float32 (n, 2, size, size), events inside the box per slice): the Eq. (1) frame of each slice,
    cropped, computed from the slice's events by the live node's :func:`microexp.vision.crop.crop_events`."""
    from microexp.vision.crop import clip_box, crop_events, pixel_box

    out = np.empty((n, 2, size, size), dtype=np.float32)
    activity = np.zeros(n, dtype=np.int64)
    inside = clip_box(box, width, height)
    px = pixel_box(inside) if inside is not None else None
    for k, part in enumerate(slice_windows(events, t0_us, n, slice_us)):
        crop_events(part, width, height, box, size, out=out[k])
        if px is not None and part.shape[0]:
            activity[k] = box_count(part, px)
    return out, activity


def _frame_crops(frames: list, centres_ns: np.ndarray, box, size: int, gray: bool = False):
    """Crops of the frame nearest each slice centre: uint8 (T, C, S, S) (C = 1 for mono, 3 for RGB), plus the
    gray version (T, S, S) of RGB frames when ``gray``."""
    import cv2

    from microexp.vision.crop import crop_resize

    stamps = np.asarray([f[0] for f in frames], dtype=np.int64)
    idx = (
        np.clip(np.searchsorted(stamps, centres_ns), 1, len(stamps) - 1)
        if len(stamps) > 1
        else np.zeros(len(centres_ns), dtype=np.int64)
    )
    if len(stamps) > 1:
        left = stamps[idx - 1]
        idx = np.where(np.abs(centres_ns - left) <= np.abs(stamps[idx] - centres_ns), idx - 1, idx)
    cache: dict = {}
    crops, grays = [], []
    for i in idx:
        i = int(i)
        if i not in cache:
            img = _decode_image(frames[i][1], frames[i][2])
            chw = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
            c = np.clip(np.rint(crop_resize(chw, box, size)), 0, 255).astype(np.uint8)
            g = None
            if gray and img.ndim == 3:
                g = np.clip(
                    np.rint(crop_resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[None], box, size)[0]), 0, 255
                ).astype(np.uint8)
            cache = {i: (c, g)}  # frames come in order: one entry suffices
        crops.append(cache[i][0])
        grays.append(cache[i][1])
    return (
        np.stack(crops),
        (np.stack(grays) if gray and grays and grays[0] is not None else None),
        len(set(int(i) for i in idx)),
    )


def _labels(src: SegmentSource, data: SegmentData) -> dict:
    """Subject, AU, trial, lux of a clip: the manifest, else the recorder's markers, else the ground truth."""
    start = next((m for m in data.markers if m["event"] == "start"), None)
    gt = next((g for g in data.ground_truth if g["au"]), None)
    subject = src.subject or (start or {}).get("subject") or (gt or {}).get("subject")
    au = src.au or (start or {}).get("au") or (gt or {}).get("au")
    trial = src.trial if src.trial is not None else (start or gt or {}).get("trial", 0)
    if not subject or not au:
        raise FormatError(
            src.bags[0], "cannot tell subject and AU of this bag (no manifest, segment marker or ground truth)"
        )
    lux, lux_source = None, None
    for value, source in (
        (src.lux, "manifest"),
        ((start or {}).get("lux"), "marker"),
        ((data.ground_truth[0] if data.ground_truth else {}).get("lux"), "ground_truth"),
    ):
        if value is not None and value > 0:
            lux, lux_source = float(value), source
            break
    return {
        "subject": subject,
        "au": au_label(au_index(au)),
        "label": au_index(au),
        "trial": int(trial),
        "lux": lux,
        "lux_source": lux_source,
    }


def build_clip(src: SegmentSource, data: SegmentData, opts: BuildOptions, detector, root: Path) -> dict:
    """Write the arrays of one clip under ``root`` and return its index entry."""
    labels = _labels(src, data)
    sensors = [s for s in opts.sensors if s in data.streams and data.streams[s].chunks]
    if not sensors:
        raise FormatError(src.bags[0], f"no events of {', '.join(opts.sensors)} in this segment")
    ref = sensors[0]
    streams = {s: data.streams[s] for s in sensors}
    events = {s: streams[s].events() for s in sensors}
    offsets = {s: streams[s].offset_ns() for s in sensors}
    start_ns = int(events[ref]["t"][0]) * 1000 + offsets[ref]
    end_ns = int(events[ref]["t"][-1]) * 1000 + offsets[ref]
    slice_ns = opts.slice_us * 1000
    n = (end_ns - start_ns) // slice_ns + 1
    if opts.max_slices:
        n = min(n, int(opts.max_slices))
    n = int(n)
    hi_ns = start_ns + n * slice_ns
    centres = start_ns + (np.arange(n, dtype=np.int64) * 2 + 1) * slice_ns // 2

    info: dict = {}
    arrays: dict = {}
    # face box on the DAVIS (APS frames), mapped to the EVK4
    davis_box, davis_source = None, None
    aps = data.frames.get("aps", [])
    if aps:
        box, hits, tries = detect_box(aps, start_ns, hi_ns, opts.detect_every, detector)
        info["aps"] = {"frames": len(aps), "detections": hits, "tried": tries}
        if box is not None:
            davis_box, davis_source = box, "mtcnn"
    for s in sensors:
        box, source = _sensor_box(s, streams[s], events[s], davis_box, davis_source, opts)
        t0_us = (start_ns - offsets[s]) // 1000
        arrays[s], info[s] = _event_clip(streams[s], events[s], int(t0_us), n, box, source, offsets[s], opts)
    if aps and "davis346" in arrays:
        crops, _, used = _frame_crops(aps, centres, info["davis346"]["box"], opts.size)
        arrays["davis346_aps"] = crops[:, 0]
        info["aps"]["used"] = used
    cam = data.frames.get("webcam", []) if opts.webcam else []
    if cam:
        info["webcam"] = _webcam_clip(cam, centres, start_ns, hi_ns, opts, detector, arrays)

    clip_id = src.clip_id
    rel = {name: save_array(root, clip_id, name, arr) for name, arr in arrays.items()}
    gt = _ground_truth_slices(data.ground_truth, start_ns, slice_ns)
    return {
        "id": clip_id,
        **labels,
        "session": src.session,
        "segment": src.segment,
        "segment_id": src.segment_id,
        "bags": [str(Path(b).resolve()) for b in src.bags],
        "slices": n,
        "t_start_ns": int(start_ns),
        **({"truncated": data.truncated} if data.truncated else {}),
        "reference": ref,
        "activity_peak": info[ref]["activity_peak"],
        "arrays": rel,
        "sensors": info,
        "ground_truth": gt,
    }


def _sensor_box(s: str, st: EventStream, events: np.ndarray, davis_box, davis_source, opts: BuildOptions):
    """(square crop box, its source) of event sensor ``s``: the DAVIS face box (mapped to the EVK4), else the
    bounding box of event activity, else a centred square."""
    from microexp.vision.crop import square_box

    if s == "davis346" and davis_box is not None:
        raw_box, source = davis_box, davis_source
    elif s == "evk4" and davis_box is not None:
        sx, sy, ox, oy = opts.evk4_map
        raw_box = (sx * davis_box[0] + ox, sy * davis_box[1] + oy, sx * davis_box[2] + ox, sy * davis_box[3] + oy)
        source = "mapped:davis346"
    else:
        raw_box, source = activity_box(events, st.width, st.height), "events"
        if raw_box is None:
            raw_box, source = centre_box(st.width, st.height), "centre"
    return square_box(raw_box, opts.margin), source


def _event_clip(
    st: EventStream, events: np.ndarray, t0_us: int, n: int, box, source: str, offset_ns: int, opts: BuildOptions
) -> tuple[np.ndarray, dict]:
    """(crops of the clip's n slices from ``t0_us``, the sensor's index entry) of one event sensor."""
    binned = events
    if opts.noise_filter_us:
        from microexp.events.filters import BackgroundActivityFilter

        binned = BackgroundActivityFilter(st.width, st.height, opts.noise_filter_us)(binned)
    crops, activity = _event_crops(binned, st.width, st.height, t0_us, n, opts.slice_us, box, opts.size)
    return crops, {
        "width": st.width,
        "height": st.height,
        "events": int(len(events)),
        "events_binned": int(len(binned)),
        "packets": len(st.packets),
        "seq_missing": int(st.seq_missing),
        "offset_ns": int(offset_ns),
        "span_s": round((int(events["t"][-1]) - int(events["t"][0])) / 1e6, 4),
        "box": [round(v, 2) for v in box],
        "box_source": source,
        "activity": [int(a) for a in activity],
        "activity_peak": movement_peak(activity),
    }


def _webcam_clip(cam: list, centres: np.ndarray, start_ns: int, hi_ns: int, opts: BuildOptions, detector, arrays):
    """The webcam's RGB (and gray) crops into ``arrays``; returns its index entry."""
    from microexp.vision.crop import square_box

    box, hits, tries = detect_box(cam, start_ns, hi_ns, opts.detect_every, detector)
    h, w = _decode_image(cam[0][1], cam[0][2]).shape[:2]
    source = "mtcnn"
    if box is None:
        box, source = centre_box(w, h), "centre"
    box = square_box(box, opts.margin)
    rgb, gray, used = _frame_crops(cam, centres, box, opts.size, gray=True)
    arrays["webcam_rgb"] = rgb
    if gray is not None:
        arrays["webcam_gray"] = gray
    return {
        "width": w,
        "height": h,
        "frames": len(cam),
        "used": used,
        "detections": hits,
        "tried": tries,
        "box": [round(v, 2) for v in box],
        "box_source": source,
    }


def _ground_truth_slices(gt: list, start_ns: int, slice_ns: int) -> Optional[dict]:
    """Phase changes of the synthetic ground truth as (fractional) slice indices of the clip."""
    if not gt:
        return None
    out: dict = {"intensity": max(g["intensity"] for g in gt)}
    moving = [g for g in gt if g["au"]]
    for g in gt:
        name = g["phase"] if g["au"] else ("end" if moving and g["stamp_ns"] > moving[0]["stamp_ns"] else "start")
        out.setdefault(name, round((g["stamp_ns"] - start_ns) / slice_ns, 2))
    return out


# ---------------------------------------------------------------------------------------------- driver


def build_dataset(
    paths: Sequence, out, opts: Optional[BuildOptions] = None, progress: bool = True, threads: Optional[int] = None
) -> dict:
    """Build (or extend) the dataset at ``out`` from sessions / bags; returns a summary dict."""
    from tqdm import tqdm

    opts = opts or BuildOptions()
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    from microexp.bags.manifest import check_output_folder

    if opts.max_slices is not None and int(opts.max_slices) < 1:
        raise ParameterError(f"--max-slices must be >= 1, got {opts.max_slices}")
    root = check_output_folder(out, "--out")
    bad_sources: list = []
    sources = find_sources(paths, bad_sources)
    for b in bad_sources:
        print(f"skipped {b['clip']}: {b['error']}", file=sys.stderr)
    doc = load_or_create_index(
        root,
        slice_us=opts.slice_us,
        size=opts.size,
        margin=opts.margin,
        evk4_map=list(opts.evk4_map),
        noise_filter_us=int(opts.noise_filter_us),
        face_box=opts.face_box,
    )
    have = {c["id"]: c for c in doc["clips"]}
    detector = Detectors(opts.min_probability, opts.face_box)
    built, skipped, failed = 0, 0, list(bad_sources)
    t_start = time.monotonic()
    bar = tqdm(sources, desc="clips", unit="clip", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for src in bar:
        bar.set_postfix_str(src.clip_id[-32:])
        if src.clip_id in have and not opts.overwrite:
            skipped += 1
            continue
        try:
            check_foreign(src, opts.allow_foreign)
            data = read_segment(src.bags, opts.topics, opts.sensors, opts.webcam, opts.allow_truncated)
            entry = build_clip(src, data, opts, detector, root)
            if src.foreign:
                entry["foreign"] = src.foreign
        except MicroexpError as exc:
            failed.append({"clip": src.clip_id, "error": str(exc)})
            tqdm.write(f"skipped {src.clip_id}: {exc}", file=sys.stderr)
            continue
        have[entry["id"]] = entry
        doc["clips"] = list(have.values())
        for b in src.bags:
            parent = str(Path(b).resolve().parent)
            if parent not in doc["sources"]:
                doc["sources"].append(parent)
        save_index(root, doc)
        built += 1
    doc["skipped"] = failed  # the inputs of this run that were left out, and why (truncated, damaged, ...)
    save_index(root, doc)
    clips = doc["clips"]
    summary = {
        "out": str(root),
        "clips": len(clips),
        "built": built,
        "skipped_existing": skipped,
        "failed": failed,
        "truncated": sum(bool(c.get("truncated")) for c in clips),
        "foreign": sum(bool(c.get("foreign")) for c in clips),
        "seconds": round(time.monotonic() - t_start, 1),
        "subjects": sorted({c["subject"] for c in clips}),
        "by_array": {
            a: sum(a in c["arrays"] for c in clips)
            for a in ("davis346", "evk4", "davis346_aps", "webcam_rgb", "webcam_gray")
        },
        "box_sources": _count_box_sources(clips),
        "seq_missing": {s: sum(c["sensors"].get(s, {}).get("seq_missing", 0) for c in clips) for s in opts.sensors},
    }
    return summary


def _count_box_sources(clips: list) -> dict:
    out: dict = {}
    for c in clips:
        for s, info in c["sensors"].items():
            if "box_source" in info:
                key = f"{s}:{info['box_source']}"
                out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="BAG_OR_SESSION",
        help="recording session folders (kept segments of manifest.json), bags, or folders of sessions",
    )
    parser.add_argument("--out", required=True, help="dataset folder (created, or extended when it exists)")
    parser.add_argument("--sensors", default="davis346,evk4", help="event sensors to make clips of")
    parser.add_argument("--no-webcam", action="store_true", help="skip the webcam RGB crops and gray targets")
    parser.add_argument(
        "--evk4-map",
        default="synthetic",
        help="DAVIS->EVK4 box mapping 'sx,sy,ox,oy' (pixels), or 'synthetic' (the synthetic rig's geometry)",
    )
    parser.add_argument(
        "--margin", type=float, default=1.2, help="square crop side / face box side (live node: face_margin)"
    )
    parser.add_argument("--detect-every", type=int, default=4, help="run MTCNN on every N-th frame of a clip")
    parser.add_argument("--min-probability", type=float, default=0.9, help="MTCNN detections below this are ignored")
    parser.add_argument("--max-slices", type=int, default=None, help="cut clips to at most this many 33 ms slices")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="ROLE=TOPIC",
        help=f"override a topic ({', '.join(f'{k}={v}' for k, v in DEFAULT_TOPICS.items())})",
    )
    parser.add_argument(
        "--noise-filter-us",
        type=int,
        default=0,
        help="background-activity filter before binning: an event passes when a neighbouring pixel "
        "fired within this many µs (e.g. 5000; 0 = off, the paper's path). Stored in the index; "
        "models trained on it make the live node filter the same way",
    )
    parser.add_argument(
        "--face-box",
        choices=("mtcnn", "landmarks"),
        default="mtcnn",
        help="face box: MTCNN's box (the paper's) or one placed by MTCNN's five landmarks, which puts "
        "eyes and mouth at the same crop pixels for every person (vision.face.landmark_box). "
        "Stored in the index; models trained on it make the live node crop the same way",
    )
    parser.add_argument("--overwrite", action="store_true", help="rebuild clips already in the index")
    parser.add_argument(
        "--allow-truncated",
        action="store_true",
        help="build clips of truncated bags too (killed recorder, file cut off); they are marked "
        '"truncated" in the index. Default: skipped, each with one line',
    )
    parser.add_argument(
        "--allow-foreign",
        action="store_true",
        help="build segments that the recorder flagged foreign (another publisher on the domain wrote into "
        'them); they are marked "foreign" in the index. Default: skipped, each with one line',
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads for MTCNN")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args) -> BuildOptions:
    topics = dict(DEFAULT_TOPICS)
    for item in args.topic:
        role, _, topic = item.partition("=")
        if role not in DEFAULT_TOPICS or not topic:
            raise ParameterError(f"--topic {item!r}: expected ROLE=TOPIC with ROLE one of {', '.join(DEFAULT_TOPICS)}")
        topics[role] = topic
    sensors = tuple(s.strip() for s in args.sensors.split(",") if s.strip())
    bad = [s for s in sensors if s not in EVENT_ARRAYS]
    if bad or not sensors:
        raise ParameterError(f"--sensors {args.sensors!r}: choose from {', '.join(EVENT_ARRAYS)}")
    if args.detect_every < 1:
        raise ParameterError("--detect-every must be >= 1")
    if args.max_slices is not None and args.max_slices < 1:
        raise ParameterError(f"--max-slices must be >= 1, got {args.max_slices}")
    if args.noise_filter_us < 0:
        raise ParameterError(f"--noise-filter-us must be >= 0, got {args.noise_filter_us}")
    return BuildOptions(
        margin=args.margin,
        detect_every=args.detect_every,
        min_probability=args.min_probability,
        evk4_map=parse_map(args.evk4_map),
        sensors=sensors,
        webcam=not args.no_webcam,
        max_slices=args.max_slices,
        topics=topics,
        overwrite=args.overwrite,
        noise_filter_us=args.noise_filter_us,
        face_box=args.face_box,
        allow_truncated=args.allow_truncated,
        allow_foreign=args.allow_foreign,
    )


def run(args) -> int:
    summary = build_dataset(
        args.paths, args.out, options_from_args(args), progress=not args.quiet, threads=args.threads
    )
    print(json.dumps(summary), flush=True)
    return 1 if summary["failed"] else 0
