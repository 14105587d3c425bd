"""The live path run on recorded bags in this process, without ROS: the inference node's pipeline fed with a
session's event packets and face boxes in recorded order, as fast as the machine runs it.

:func:`run_bags` gives what the node would publish for the same packets (per-window results and movement
verdicts), with the face detector run on the recorded images at ``face_rate_hz`` of recorded time and the
stream's gaps (between segments) ending clips as the node's idle flush does. ``microexp evaluate --in-process``
uses it; the DDS route (replay node -> inference node) is the default there, and this one is its reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from microexp.bags.cdr import EVENT_PACKET
from microexp.events.stream import Packet, StreamReader
from microexp.infer.face import BoxMap, FaceTracker
from microexp.infer.pipeline import StreamingAUPipeline
from microexp.infer.spotting import SpotterConfig

__all__ = ["BagRun", "run_bags"]


DEFAULT_SPOTTING = SpotterConfig()


@dataclass
class BagRun:
    """What :func:`run_bags` produced: per-window results and verdicts as (sensor µs, record), and the stream's
    clock offset (ROS ns - 1000 * sensor µs, from the packets' stamps)."""

    windows: list = field(default_factory=list)  #: (WindowResult, stamp_ns)
    verdicts: list = field(default_factory=list)  #: (MovementVerdict, stamp_ns)
    offsets: list = field(default_factory=list)  #: stamp_ns - 1000 * first event µs per packet
    counters: dict = field(default_factory=dict)


def run_bags(
    bags: Sequence,
    model,
    *,
    events_topic: str = "/davis346/events",
    frames_topic: str = "/davis346/image_raw",
    detector: Optional[Callable] = None,
    face_rate_hz: float = 5.0,
    spotting: Optional[SpotterConfig] = DEFAULT_SPOTTING,
    temperature: float = 1.0,
    slice_us: int = 33_000,
    gap_us: int = 200_000,
    noise_filter_us: int = 0,
    face_margin: float = 1.2,
    activity_filter_us: int = 20_000,
    device: str = "cpu",
) -> BagRun:
    """Run the live pipeline over ``bags`` (in order) as described in the module docstring. ``detector``:
    ``rgb -> box | None`` (e.g. :class:`~microexp.vision.face.MtcnnDetector`); None = no face tracking (the
    whole sensor is the crop)."""
    from microexp.bags.reader import Bag
    from microexp.vision.image import image_array, to_rgb

    now = [0.0]
    tracker = FaceTracker(0.5, 3, BoxMap(), face_margin, 2.0, clock=lambda: now[0]) if detector else None
    reader = StreamReader()
    run = BagRun()
    pipeline: Optional[StreamingAUPipeline] = None
    next_detect = 0.0
    period = 1.0 / face_rate_hz if face_rate_hz > 0 else float("inf")

    def take(results, stamp_fallback: int):
        for r in results:
            stamp = stamp_fallback
            run.windows.append((r, stamp))
            for s in r.spotted:
                run.verdicts.append((pipeline.judge(s), stamp))

    last_stamp = None
    for path in bags:
        with Bag(path) as bag:
            topics = [t for t in (events_topic, frames_topic) if t and t in bag.topics()]
            for topic, msgtype, _, raw in bag.messages(topics):
                msg = bag.deserialize(raw, msgtype)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                now[0] = stamp / 1e9
                if topic == frames_topic:
                    if tracker is not None and now[0] >= next_detect:
                        next_detect = now[0] + period
                        tracker.update(detector(to_rgb(image_array(msg), msg.encoding)))
                    continue
                if msgtype != EVENT_PACKET:
                    continue
                packet = Packet.from_msg(msg)
                if pipeline is None:
                    reader.open(*packet.key)
                    pipeline = StreamingAUPipeline(
                        model,
                        packet.width,
                        packet.height,
                        slice_us=slice_us,
                        device=device,
                        gap_us=gap_us,
                        temperature=temperature,
                        face=tracker,
                        noise_filter_us=noise_filter_us,
                        spotting=spotting,
                        activity_filter_us=activity_filter_us,
                        cuda_graph=False,
                    )
                if last_stamp is not None and stamp - last_stamp > gap_us * 1000:
                    take(pipeline.flush(), last_stamp)  # the node's idle flush: no packet for gap_ms
                last_stamp = stamp
                decoded = reader.feed(packet)
                if decoded.seq_gap:
                    pipeline.note_discontinuity("seq_gap")
                ev = decoded.events
                if ev.shape[0]:
                    run.offsets.append(stamp - 1000 * int(ev["t"][0]))
                    take(pipeline.push(ev), stamp)
    if pipeline is not None:
        take(pipeline.flush(), last_stamp or 0)
        run.counters = pipeline.counters()
    return run
