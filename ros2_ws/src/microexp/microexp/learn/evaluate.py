"""A checkpoint offline on the clips of a dataset: one verdict per clip, as the model was trained to judge
(no rclpy).

Each clip's window is the training window (``slices`` from the checkpoint, 16 x 33 ms) centred on the
clip's ``activity_peak`` (:func:`microexp.events.activity.movement_peak`), clamped into the clip and padded
with empty frames when the clip is shorter (:class:`microexp.learn.clips.ClipBank` without jitter), and the
model runs over it from a fresh state. This is the reference the live path (spot, then judge the same window)
is compared with by ``microexp evaluate``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from microexp.aus import AU_LABELS
from microexp.errors import MicroexpError

__all__ = ["offline_verdicts"]


def offline_verdicts(
    dataset,
    model,
    meta: dict,
    sensor: Optional[str] = None,
    temperature: float = 1.0,
    device: str = "cpu",
) -> list[dict]:
    """Per clip of ``dataset`` (a :class:`~microexp.learn.dataset.ClipDataset`) with ``sensor``'s events (default:
    the checkpoint's training sensor): ``{"id", "session", "segment", "segment_id", "subject", "au", "trial",
    "predicted", "confidence", "top3", "peak", "t_start_ns", "slices"}``, in the dataset's order."""
    from microexp.learn.clips import ClipBank
    from microexp.learn.folds import Sample
    from microexp.learn.train import predict

    inp = (meta.get("extra") or {}).get("input") or {}
    sensor = sensor or inp.get("sensor") or "davis346"
    slices = int(inp.get("slices") or 16)
    clips = dataset.select(sensor)
    if not clips:
        raise MicroexpError(f"{dataset.root}: no clips with {sensor} events to evaluate")
    samples = [
        Sample(
            c["id"], c["subject"], int(c["label"]), sensor, int(c["sensors"][sensor]["activity_peak"]), int(c["slices"])
        )
        for c in clips
    ]
    bank = ClipBank(dataset, samples, slices, 0)
    scores = predict(model, bank.batch(range(len(samples))), batch_size=8, device=device)
    out = []
    for clip, s, row in zip(clips, samples, scores):
        probs = _softmax(row / float(temperature))
        top = [int(i) for i in np.argsort(-probs)[:3]]
        out.append(
            {
                "id": clip["id"],
                "session": clip.get("session"),
                "segment": clip.get("segment"),
                "segment_id": clip.get("segment_id"),
                "subject": clip["subject"],
                "au": clip["au"],
                "trial": clip.get("trial"),
                "predicted": AU_LABELS[top[0]],
                "confidence": float(probs[top[0]]),
                "top3": [AU_LABELS[i] for i in top],
                "peak": s.peak,
                "t_start_ns": int(clip.get("t_start_ns", 0)),
                "slices": int(clip["slices"]),
            }
        )
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(z - z.max())
    return (e / e.sum()).astype(np.float32)


# ---------------------------------------------------------------------------------------------- sessions


@dataclass
class SegmentTruth:
    """A kept segment of a session: its label, its span on ROS time and the movement's ground truth."""

    name: str
    au: str
    start_ns: int
    stop_ns: int
    movement: Optional[tuple] = None  #: (onset_ns, apex_ns, end_ns) of the synthetic ground truth, if recorded


@dataclass
class SessionTruth:
    """What a session says is true: its segments and, per event stream, ROS ns - 1000 * sensor µs."""

    folder: str
    subject: str
    segments: list = field(default_factory=list)
    offsets: dict = field(default_factory=dict)

    def to_ros_ns(self, sensor: str, t_us: int) -> int:
        """Sensor µs of ``sensor`` on ROS time (the recording's clock)."""
        if sensor not in self.offsets:
            raise MicroexpError(f"{self.folder}: no {sensor} event packets to map its clock")
        return int(t_us) * 1000 + self.offsets[sensor]


def session_truth(folder, topics: Optional[dict] = None) -> SessionTruth:
    """The labels of a session folder (``manifest.json``), the synthetic ground truth in its bags
    (``/synthetic/ground_truth``: the movement from its ``onset`` phase to its return to ``neutral``) and the
    clock offset of each event stream (the median of packet stamp - first event time, as the dataset builder)."""
    from microexp.bags.cdr import EVENT_PACKET
    from microexp.bags.manifest import load
    from microexp.bags.reader import Bag
    from microexp.events.stream import Packet, StreamReader
    from microexp.learn.build import DEFAULT_TOPICS

    topics = {**DEFAULT_TOPICS, **(topics or {})}
    doc = load(folder)
    truth = SessionTruth(str(folder), str(doc.get("subject", "")))
    sensors = {topics[s]: s for s in ("davis346", "evk4")}
    offsets: dict = {s: [] for s in sensors.values()}
    readers: dict = {}  # one decoder per stream across its packets, as the dataset builder
    for seg in doc.get("segments", []):
        if seg.get("status") != "kept" or not seg.get("bags"):
            continue
        phases = []
        for name in seg["bags"]:
            with Bag(Path(folder) / name) as bag:
                wanted = [t for t in bag.topics() if t in sensors or t == topics["ground_truth"]]
                for topic, msgtype, _, raw in bag.messages(wanted):
                    msg = bag.deserialize(raw, msgtype)
                    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                    if topic == topics["ground_truth"]:
                        phases.append((stamp, str(msg.phase), str(msg.au)))
                    elif msgtype == EVENT_PACKET:
                        packet = Packet.from_msg(msg)
                        if sensors[topic] not in readers:
                            readers[sensors[topic]] = StreamReader()
                            readers[sensors[topic]].open(*packet.key)
                        events = readers[sensors[topic]].feed(packet).events
                        if len(events):
                            offsets[sensors[topic]].append(stamp - 1000 * int(events["t"][0]))
        truth.segments.append(
            SegmentTruth(seg["name"], seg["au"], int(seg["start_ns"]), int(seg["stop_ns"] or 0), _movement(phases))
        )
    truth.offsets = {s: int(np.median(v)) for s, v in offsets.items() if v}
    return truth


def _movement(phases: list) -> Optional[tuple]:
    """(onset_ns, apex_ns, end_ns) from the ground-truth phase changes of one clip, or None."""
    onset = next((t for t, p, au in phases if p == "onset" and au), None)
    if onset is None:
        return None
    apex = next((t for t, p, au in phases if p == "apex" and t >= onset), onset)
    end = next((t for t, p, au in phases if p == "neutral" and t > onset), None)
    return (onset, apex, end) if end is not None else None


# ---------------------------------------------------------------------------------------------- scoring


def event_row(e) -> dict:
    """An AU event as the scorer reads it (and ``au_events.jsonl`` stores it), from an AUEvent message or a
    :class:`~microexp.infer.pipeline.MovementVerdict` (anything with their fields)."""
    return {
        "onset_us": int(e.onset_us),
        "apex_us": int(e.apex_us),
        "offset_us": int(e.offset_us),
        "decided_us": int(e.decided_us),
        "au": str(e.au),
        "confidence": round(float(e.confidence), 5),
        "top3": [AU_LABELS[int(i)] for i in e.top3],
        "closed": str(getattr(e, "closed", getattr(e, "forced", ""))),
        "latency_ms": round(float(getattr(e, "latency_ms", 0.0)), 3),
    }


def score_session(
    truth: SessionTruth, events: list, offline: Optional[list], sensor: str, iou: float = 0.5
) -> tuple[dict, object]:
    """Score the live AU events of one session against its truth (see ``microexp evaluate``): per-segment
    accuracy of the live and offline verdicts, spotting at ``iou`` (MEGC) and recognition of the spotted
    movements. ``events``: dicts with ``onset_us``, ``apex_us``, ``offset_us``, ``decided_us`` (sensor µs),
    ``au``, ``confidence``, ``latency_ms``. Returns (the report, the session's
    :class:`~microexp.scoring.SpotCounts` for pooling)."""
    from microexp.scoring import Interval, count, recognition_scores, segment_accuracy, spotting_scores

    spotted = [
        Interval(truth.to_ros_ns(sensor, e["onset_us"]), truth.to_ros_ns(sensor, e["offset_us"]), e["au"])
        for e in events
    ]
    moving = [s for s in truth.segments if s.movement is not None]
    gt = [Interval(s.movement[0], s.movement[2], s.au) for s in moving]
    counts = count(spotted, gt, iou)
    offline_by_segment = {o["segment"]: o for o in offline or []}
    segments, live_pairs, offline_pairs = [], [], []
    for seg in truth.segments:
        inside = [e for e in events if seg.start_ns <= truth.to_ros_ns(sensor, e["apex_us"]) <= (seg.stop_ns or 2**62)]
        best = max(inside, key=lambda e: e["confidence"]) if inside else None
        off = offline_by_segment.get(seg.name)
        live_pairs.append((seg.au, best["au"] if best else None))
        if off is not None:
            offline_pairs.append((seg.au, off["predicted"]))
        segments.append(
            {
                "segment": seg.name,
                "au": seg.au,
                "live": best["au"] if best else None,
                "live_confidence": round(best["confidence"], 4) if best else None,
                "events": len(inside),
                "offline": off["predicted"] if off else None,
                "offline_confidence": round(off["confidence"], 4) if off else None,
            }
        )
    in_rest = sum(1 for w in spotted if not any(min(w.end, g.end) > max(w.start, g.start) for g in gt))
    latencies = []
    for w, g, _ in counts.pairs:
        seg = next(s for s in moving if s.movement[0] == g.start and s.movement[2] == g.end)
        ev = events[spotted.index(w)]
        apex_us = (seg.movement[1] - truth.offsets[sensor]) / 1000.0
        latencies.append((ev["decided_us"] - apex_us) / 1000.0 + ev["latency_ms"])
    report = {
        "session": truth.folder,
        "subject": truth.subject,
        "segments": len(truth.segments),
        "live_accuracy": _round(segment_accuracy(live_pairs)),
        "offline_accuracy": _round(segment_accuracy(offline_pairs)) if offline is not None else None,
        "agree": sum(1 for s in segments if s["live"] == s["offline"]) if offline is not None else None,
        "au_events": len(events),
        "au_events_in_rest": in_rest,
        "spotting": {k: _round(v) for k, v in spotting_scores(counts).items()},
        "recognition": {k: _round(v) for k, v in recognition_scores(counts).items()},
        "latency_apex_to_event_ms": _percentiles(latencies),
        "per_segment": segments,
    }
    return report, counts


def pool_reports(reports: list, counts: list) -> dict:
    """One summary over sessions: per-segment accuracies over all segments, spotting and recognition over
    the pooled counts (MEGC pools, it does not average), latency percentiles over all true positives."""
    from microexp.scoring import recognition_scores, spotting_scores

    total = sum(counts[1:], counts[0]) if counts else None
    n = sum(r["segments"] for r in reports)
    live = sum(1 for r in reports for s in r["per_segment"] if s["live"] == s["au"])
    offline = [s for r in reports if r["offline_accuracy"] is not None for s in r["per_segment"]]
    lat = [r["latency_apex_to_event_ms"] for r in reports if r["latency_apex_to_event_ms"]]
    return {
        "sessions": len(reports),
        "segments": n,
        "live_accuracy": _round(live / n) if n else None,
        "offline_accuracy": _round(sum(1 for s in offline if s["offline"] == s["au"]) / len(offline))
        if offline
        else None,
        "au_events_in_rest": sum(r["au_events_in_rest"] for r in reports),
        "spotting": {k: _round(v) for k, v in spotting_scores(total).items()} if total else None,
        "recognition": {k: _round(v) for k, v in recognition_scores(total).items()} if total else None,
        "latency_apex_to_event_ms": {
            "p50_max": max(x["p50"] for x in lat),
            "p99_max": max(x["p99"] for x in lat),
        }
        if lat
        else None,
    }


def _seconds_since(origin_ns: int, ns: int) -> float:
    return (ns - origin_ns) / 1e9


def _round(v, n: int = 4):
    return None if v is None else round(float(v), n)


def _percentiles(values: list) -> Optional[dict]:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 1), "p99": round(float(np.percentile(a, 99)), 1)}


# ---------------------------------------------------------------------------------------------- plot


def plot_session(truth: SessionTruth, events: list, report: dict, sensor: str, path, windows: Optional[list] = None):
    """One panel per segment: the ground-truth movement, the spotted intervals (green: spotted and right,
    orange: spotted, wrong AU, red: no ground-truth movement at IoU >= 0.5), the per-window state of ``~/au``
    when ``windows`` (dicts with ``t0_us``, ``t1_us``, ``state``) are given, and the true, live and offline
    labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from microexp.scoring import Interval, iou

    segs = truth.segments
    cols = min(7, max(1, len(segs)))
    rows = (len(segs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 1.9 * rows + 0.6), squeeze=False)
    per = {s["segment"]: s for s in report["per_segment"]}
    colours = {"movement": "tab:blue", "no_face": "0.55"}
    for ax, seg in zip(axes.flat, segs):
        lo = seg.start_ns
        hi = seg.stop_ns or (lo + 5 * 10**9)
        if seg.movement is not None:  # zoom on the clip: 1.5 s around the movement
            lo, hi = max(lo, seg.movement[0] - 1_500_000_000), min(hi, seg.movement[2] + 1_500_000_000)
        sec = functools.partial(_seconds_since, lo)
        if seg.movement is not None:
            ax.axvspan(sec(seg.movement[0]), sec(seg.movement[2]), ymin=0.66, ymax=0.95, color="k", alpha=0.75)
        for w in windows or []:
            a, b = truth.to_ros_ns(sensor, w["t0_us"]), truth.to_ros_ns(sensor, w["t1_us"])
            if lo <= a <= hi and w["state"] in colours:
                ax.axvspan(sec(a), sec(b), ymin=0.05, ymax=0.25, color=colours[w["state"]], lw=0)
        for e in events:
            a, b = truth.to_ros_ns(sensor, e["onset_us"]), truth.to_ros_ns(sensor, e["offset_us"])
            if b < lo or a > hi:
                continue
            matched = (
                seg.movement is not None and iou(Interval(a, b), Interval(seg.movement[0], seg.movement[2])) >= 0.5
            )
            colour = ("tab:green" if e["au"] == seg.au else "tab:orange") if matched else "tab:red"
            ax.axvspan(sec(a), sec(b), ymin=0.33, ymax=0.6, color=colour, alpha=0.85)
            ax.text(sec(a), 0.62, e["au"], fontsize=6, transform=ax.get_xaxis_transform())
        p = per.get(seg.name, {})
        ax.set_title(f"{seg.au}: live {p.get('live') or '-'} / offline {p.get('offline') or '-'}", fontsize=7)
        ax.set_xlim(0, sec(hi))
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(segs) :]:
        ax.axis("off")
    sp = report["spotting"]
    fig.suptitle(
        f"{truth.subject}: live {report['live_accuracy']} / offline {report['offline_accuracy']} per segment; "
        f"spotting F1 {sp['f1']} (top: ground truth; middle: AU events; bottom: ~/au movement, grey: no face)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def session_offline_verdicts(session, model_path, dataset_folder, sensor: str = "davis346") -> list:
    """The checkpoint at ``model_path`` offline on the clips the dataset builder cuts from ``session`` into
    ``dataset_folder`` (built as the checkpoint's training data was: its noise filter and face-box rule)."""
    from microexp.learn.build import BuildOptions, build_dataset
    from microexp.learn.dataset import ClipDataset
    from microexp.models import load_checkpoint  # torch: imported when a model is loaded

    model, meta = load_checkpoint(model_path, map_location="cpu", expected="snn")
    model.eval()
    inp = meta.get("extra", {}).get("input", {})
    opts = BuildOptions(
        sensors=(sensor,),
        webcam=False,
        noise_filter_us=int(inp.get("noise_filter_us", 0) or 0),
        face_box=str(inp.get("face_box", "mtcnn") or "mtcnn"),
    )
    summary = build_dataset([session], dataset_folder, opts, progress=False)
    if summary.get("failed"):
        raise MicroexpError(f"{session}: the dataset builder could not cut {summary['failed']}")
    temperature = float(meta.get("extra", {}).get("temperature") or 1.0)
    name = Path(session).resolve().name
    verdicts = offline_verdicts(ClipDataset(dataset_folder), model, meta, sensor=sensor, temperature=temperature)
    return [v for v in verdicts if Path(str(v["session"])).resolve().name == name]
