"""Synthetic rig node: simulated subjects performing Action Units, published exactly as the real sensor
nodes publish them, plus the ground truth.

Topics: ``/davis346/events`` (EventPacket, ``libcaer`` as libcaer_driver publishes, or ``evt3``),
``/davis346/image_raw`` (mono8 APS), ``/evk4/events`` (EventPacket ``evt3``), ``/webcam/image_raw`` (bgr8),
``/<sensor>/sync_status``, and ``/synthetic/ground_truth`` (GroundTruth at every phase change).

What it performs: with ``plan`` set (e.g. ``AU2,AU12`` or ``all``) it plays those clips one after another
and then reports ``finished``; with ``plan`` empty it waits for the recorder's segment markers
(``/recorder/segments``) and performs the segment's AU ``perform_delay_s`` after each segment starts — the
simulated subject watches the protocol screen. Clips are simulated ahead of time on a worker thread (the
event simulator is slower than real time for the EVK4), then played with their arrival timing at ``rate``.
Between clips nothing is published (no idle stream). ``~/take_status`` (microexp_msgs/TakeStatus) answers the
protocol at once: asked with a take's AU and trial it starts simulating that clip and says whether it is
ready; ``idle`` once every requested clip is published; and the messages published per topic.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
from sensor_msgs.msg import Image

from event_camera_msgs.msg import EventPacket
from microexp.config import Param
from microexp.events.codecs import make_encoder
from microexp.events.dtype import make_events
from microexp.protocol import parse_aus
from microexp.ros.images import to_msg
from microexp.ros.main import run_node
from microexp.ros.messages import event_packet
from microexp.ros.nodes.sensor import SensorNode
from microexp.ros.qos import LATCHED_QOS, qos_named
from microexp.synth.player import ClipPlayer
from microexp_msgs.msg import GroundTruth, SegmentMarker
from microexp_msgs.srv import TakeStatus

SIZES = {"davis346": (346, 260), "evk4": (1280, 720)}

PARAMS = (
    Param("sensors", "davis346,evk4,webcam", "simulated sensors (the EVK4 costs about 10 s of simulation per clip)"),
    Param("subject", "S01", "pseudonym of the simulated subject; its digits pick the synthetic identity (S03 -> 3)"),
    Param("seed", 0, "seed of subjects, trials, clocks and noise", min=0, max=2**31 - 1),
    Param("plan", "", "AUs to perform on their own ('all', 'AU2,AU12'); empty = follow the recorder's segments"),
    Param("trial", 0, "first trial index of the plan", min=0, max=1000),
    Param(
        "perform_delay_s",
        3.0,
        "after a segment starts, wait this long before the clip (the protocol countdown)",
        min=0.0,
        max=60.0,
        unit="s",
    ),
    Param("rate", 1.0, "playback speed of the clips (1 = real time, 0 = as fast as possible)", min=0.0, max=100.0),
    Param(
        "chunk_ms",
        1.0,
        "event packets cover this much sensor time (drivers batch about 1 ms)",
        min=0.5,
        max=500.0,
        unit="ms",
    ),
    Param("davis_encoding", "libcaer", "payload encoding of /davis346/events", choices=("libcaer", "evt3")),
    Param(
        "webcam_width",
        640,
        "simulated webcam width (the paper's 1920 works but costs memory and bandwidth)",
        min=64,
        max=3840,
        unit="px",
    ),
    Param("webcam_height", 360, "simulated webcam height", min=36, max=2160, unit="px"),
    Param(
        "duration_s",
        2.5,
        "clip length, neutral margins included (the paper's clips average 2.5 s)",
        min=0.5,
        max=20.0,
        unit="s",
    ),
    Param(
        "qos", "sensor", "QoS of the sensor topics: sensor (best effort) or reliable", choices=("sensor", "reliable")
    ),
    Param("segments_topic", "/recorder/segments", "segment markers to follow when plan is empty"),
    Param("prefetch", "", "AUs to simulate ahead, in order, so that segments play without delay"),
    Param("prefetch_takes", 1, "takes of each prefetched AU (the protocol's takes)", min=1, max=100),
    Param(
        "prefetch_first_trial",
        1,
        "trial number of each prefetched AU's first take (the protocol's first_trial)",
        min=0,
        max=10000,
    ),
)


def subject_index(pseudonym: str) -> int:
    digits = re.findall(r"\d+", pseudonym)
    return int(digits[-1]) if digits else 0


class SyntheticRigNode(SensorNode):
    def __init__(self, name: str = "synthetic", namespace: str = "", parameter_overrides=None):
        super().__init__(name, PARAMS, namespace, parameter_overrides)
        from microexp.synth.rig import SyntheticRig

        sensors = [s.strip() for s in self.p["sensors"].split(",") if s.strip()]
        self.subject_id = subject_index(self.p["subject"])
        self.rig = SyntheticRig(
            subjects=self.subject_id + 1,
            seed=self.p["seed"],
            sensors=sensors,
            webcam_size=(self.p["webcam_width"], self.p["webcam_height"]),
            duration_s=self.p["duration_s"],
        )
        qos = qos_named(self.p["qos"])
        self.pubs = {}
        self.encoders = {}
        self.seqs = {}
        self.clocks = {}
        for s in self.rig.sensors:
            if s in ("davis346", "evk4"):
                self.pubs[(s, "events")] = self.create_publisher(EventPacket, f"/{s}/events", qos)
                enc = self.p["davis_encoding"] if s == "davis346" else "evt3"
                encoder = make_encoder(enc, *SIZES[s])
                encoder.encode(make_events([0], [0], [1], [1]))  # compile the encoder now, not in the first clip
                encoder.reset()
                self.encoders[s] = (enc, encoder)
            if s in ("davis346", "webcam"):
                self.pubs[(s, "frame")] = self.create_publisher(
                    Image, f"/{s}/image_raw", qos_named(self.p["qos"], "image")
                )
            self.clocks[s] = self.add_clock(s, topic=f"/{s}/sync_status")
        self.gt_pub = self.create_publisher(GroundTruth, "~/ground_truth", qos_named("reliable"))
        self.events_published: dict[str, int] = {}
        self.ready = threading.Event()
        self._segments_seen: set = set()
        self.player = ClipPlayer(
            self.rig, self.subject_id, self.p["chunk_ms"] / 1000.0, self.p["rate"], self._stop, self._log_line
        )
        plan = parse_aus(self.p["plan"]) if self.p["plan"] else []
        for i, au in enumerate(plan):
            self.player.request(au, self.p["trial"] + i, None, "plan")
        if plan:
            self.player.end_of_requests()
        else:
            self.create_subscription(SegmentMarker, self.p["segments_topic"], self._on_marker, LATCHED_QOS)
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv)
        if self.p["prefetch"]:
            prefetch = self._prefetch_plan()  # a bad AU is refused here, before the node starts
            self.spawn(lambda: self.player.prefetch_loop(prefetch), "synthetic_prefetch")
        self.spawn(self.player.prepare_loop, "synthetic_sim")
        self.start_source(self._play_loop, "synthetic_play")

    # -- scheduling ------------------------------------------------------------------------------------------
    def _on_marker(self, m: SegmentMarker) -> None:
        if m.event == "start" and m.segment_id not in self._segments_seen:  # latched markers may repeat
            self._segments_seen.add(m.segment_id)
            due = time.monotonic() + self.p["perform_delay_s"]
            self.player.request(m.au, int(m.trial), due, f"segment {m.segment_id}")

    def _prefetch_plan(self) -> list[tuple[str, int]]:
        """The takes to simulate ahead: the plan's, or those the protocol will ask for, in its order."""
        aus = parse_aus(self.p["prefetch"])
        if self.p["plan"]:
            return [(au, self.p["trial"] + i) for i, au in enumerate(aus)]
        first, takes = self.p["prefetch_first_trial"], self.p["prefetch_takes"]
        return [(au, first + k) for au in aus for k in range(takes)]

    def _take_status_srv(self, req, res):
        try:
            res.ready = self.player.clip_ready(req.au, req.trial) if req.au else True
            res.message = "" if res.ready else f"simulating {req.au} trial {req.trial}"
        except Exception as exc:  # noqa: BLE001 - a bad AU: say so, the caller times out with the message
            res.ready, res.message = False, str(exc)
        res.idle = self.player.is_idle()
        published = dict(self.published)
        res.topics = list(published)
        res.counts = [int(v) for v in published.values()]
        return res

    def _play_loop(self) -> None:
        self.ready.set()
        try:
            self.player.play_loop(self._publish)
        finally:
            self.finished.set()

    def _log_line(self, level: str, text: str) -> None:
        if level == "error":
            self.get_logger().error(text)
        else:
            self.get_logger().info(text)

    # -- publishing ------------------------------------------------------------------------------------------
    def _stamp(self, sensor: str, sensor_us: int, ready_us: int):
        return self.stamp(self.clocks[sensor], sensor_us, ready_us)

    def _publish(self, m) -> None:
        if m.kind == "label":
            lab = m.payload
            g = GroundTruth()
            g.header.stamp = self.get_clock().now().to_msg()
            g.subject = self.p["subject"]
            g.au = f"AU{lab.au}" if lab.phase != "neutral" else ""
            g.trial, g.phase, g.intensity, g.lux = int(lab.trial), lab.phase, float(lab.intensity), float(lab.lux)
            self.gt_pub.publish(g)
            self.count(self.gt_pub)
            return
        shift = self.player.shift_us.get(m.sensor, 0)
        if m.kind == "events":
            events = m.payload.copy()
            events["t"] += shift
            enc_name, enc = self.encoders[m.sensor]
            payload, time_base = enc.encode(events)
            stamp = self._stamp(m.sensor, m.sensor_time_us + shift, int(events["t"][-1]))
            seq = self.seqs.get(m.sensor, 0)
            msg = event_packet(stamp, m.sensor, *SIZES[m.sensor], seq, payload, enc_name, time_base)
            self.seqs[m.sensor] = seq + 1
            pub = self.pubs[(m.sensor, "events")]
            pub.publish(msg)
            self.count(pub)
            self.events_published[pub.topic_name] = self.events_published.get(pub.topic_name, 0) + len(events)
            return
        frame = m.payload
        msg = to_msg(
            frame if frame.ndim == 2 else np.ascontiguousarray(frame[:, :, ::-1]),
            "mono8" if frame.ndim == 2 else "bgr8",
        )
        msg.header.frame_id = m.sensor
        half_us = int(0.5e6 * self.rig.setups[m.sensor].frame_interval_s)  # stamp = exposure midpoint
        msg.header.stamp.sec, msg.header.stamp.nanosec = self._stamp(
            m.sensor, m.sensor_time_us + shift, m.sensor_time_us + shift + half_us
        )
        pub = self.pubs[(m.sensor, "frame")]
        pub.publish(msg)
        self.count(pub)


def main(args=None) -> int:
    return run_node(SyntheticRigNode, args)
