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

import queue
import re
import threading
import time

import numpy as np
from sensor_msgs.msg import Image

from event_camera_msgs.msg import EventPacket
from microexp.aus import au_index, au_label
from microexp.config import Param
from microexp.events.codecs import make_encoder
from microexp.events.dtype import make_events
from microexp.playback import Pacer
from microexp.protocol import parse_aus
from microexp.ros.images import to_msg
from microexp.ros.main import run_node
from microexp.ros.messages import event_packet
from microexp.ros.nodes.sensor import SensorNode
from microexp.ros.qos import LATCHED_QOS, qos_named
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
        self.clips_played = 0
        self.ready = threading.Event()
        self._segments_seen: set = set()
        self._pending = 0  # clips requested and not yet played
        self._playing = threading.Event()
        self._requests: queue.Queue = queue.Queue()
        self._prepared: queue.Queue = queue.Queue(maxsize=2)
        plan = parse_aus(self.p["plan"]) if self.p["plan"] else []
        for i, au in enumerate(plan):
            self._pending += 1
            self._requests.put((au, self.p["trial"] + i, None, "plan"))
        if plan:
            self._requests.put(None)
        else:
            self.create_subscription(SegmentMarker, self.p["segments_topic"], self._on_marker, LATCHED_QOS)
        self._origin = time.monotonic()
        self._last_clip_end = 0.0
        self._shift_us: dict = {}
        self._cache: dict = {}
        self._key_locks: dict = {}
        self._cache_lock = threading.Lock()
        self.create_service(TakeStatus, "~/take_status", self._take_status_srv)
        if self.p["prefetch"]:
            threading.Thread(
                target=self._prefetch_loop,
                args=(parse_aus(self.p["prefetch"]),),
                name="synthetic_prefetch",
                daemon=True,
            ).start()
        threading.Thread(target=self._prepare_loop, name="synthetic_sim", daemon=True).start()
        self.start_source(self._play_loop, "synthetic_play")

    # -- scheduling ------------------------------------------------------------------------------------------
    def _on_marker(self, m: SegmentMarker) -> None:
        if m.event == "start" and m.segment_id not in self._segments_seen:  # latched markers may repeat
            self._segments_seen.add(m.segment_id)
            self._pending += 1
            due = time.monotonic() + self.p["perform_delay_s"]
            self._requests.put((m.au, int(m.trial), due, f"segment {m.segment_id}"))

    def _simulate(self, au: str, trial: int) -> list:
        """The clip's messages, simulated once per (AU, trial): concurrent callers wait for the same work."""
        key = (au_index(au), int(trial))
        with self._cache_lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                t0 = time.monotonic()
                clip = self.rig.clip(self.subject_id, au_label(key[0]), key[1])
                self._cache[key] = list(clip.stream(chunk_s=self.p["chunk_ms"] / 1000.0))
                self.get_logger().info(f"simulated {au_label(key[0])} trial {key[1]} in {time.monotonic() - t0:.1f} s")
            return self._cache[key]

    def clip_ready(self, au: str, trial: int) -> bool:
        """Whether the clip of (au, trial) is simulated; if it is neither simulated nor being simulated, start."""
        key = (au_index(au), int(trial))
        with self._cache_lock:
            if key in self._cache:
                return True
            lock = self._key_locks.get(key)
            busy = lock is not None and lock.locked()  # simulated and played already: simulate again
        if not busy:
            threading.Thread(target=self._simulate, args=(au, trial), daemon=True).start()
        return False

    def is_idle(self) -> bool:
        """Every requested clip has been published."""
        return self._requests.empty() and self._prepared.empty() and not self._playing.is_set() and self._pending == 0

    def _take_status_srv(self, req, res):
        try:
            res.ready = self.clip_ready(req.au, req.trial) if req.au else True
            res.message = "" if res.ready else f"simulating {req.au} trial {req.trial}"
        except Exception as exc:  # noqa: BLE001 - a bad AU: say so, the caller times out with the message
            res.ready, res.message = False, str(exc)
        res.idle = self.is_idle()
        published = dict(self.published)
        res.topics = list(published)
        res.counts = [int(v) for v in published.values()]
        return res

    def wait_ready(self, au: str, trial: int, timeout_s: float = 120.0) -> bool:
        """Block until the clip of (au, trial) is simulated (the experimenter waits for the subject)."""
        key = (au_index(au), int(trial))
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self._stop.is_set():
            with self._cache_lock:
                if key in self._cache:
                    return True
                busy = key in self._key_locks
            if not busy:
                threading.Thread(target=self._simulate, args=(au, trial), daemon=True).start()
            time.sleep(0.02)
        return False

    def _prefetch_loop(self, aus: list[str]) -> None:
        if self.p["plan"]:
            plan = [(au, self.p["trial"] + i) for i, au in enumerate(aus)]
        else:  # the takes the protocol will ask for, in its order
            first, takes = self.p["prefetch_first_trial"], self.p["prefetch_takes"]
            plan = [(au, first + k) for au in aus for k in range(takes)]
        for au, trial in plan:
            while len(self._cache) >= 2 and not self._stop.is_set():  # stay at most two clips ahead
                time.sleep(0.05)
            if self._stop.is_set():
                return
            try:
                self._simulate(au, trial)
            except Exception as exc:
                self.get_logger().error(f"prefetch of {au} failed: {exc}")
                return

    def _prepare_loop(self) -> None:
        try:
            while not self._stop.is_set():
                req = self._requests.get()
                if req is None:
                    self._prepared.put(None)
                    return
                au, trial, due, why = req
                msgs = self._simulate(au, trial)
                with self._cache_lock:  # played once: keep memory bounded
                    self._cache.pop((au_index(au), int(trial)), None)
                self._prepared.put((au, trial, due, msgs))
        except Exception as exc:  # a failing simulation must not hang the graph
            self.get_logger().error(f"synthetic rig stopped: {exc}")
            self._prepared.put(None)

    def wait_idle(self, timeout_s: float = 120.0, grace_s: float = 0.3) -> bool:
        """Block until every requested clip has been published (the subject finished performing), then
        ``grace_s`` more for the last messages to cross DDS."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self._stop.is_set():
            if self._requests.empty() and self._prepared.empty() and not self._playing.is_set() and self._pending == 0:
                time.sleep(grace_s)
                return True
            time.sleep(0.02)
        return False

    def _play_loop(self) -> None:
        self.ready.set()
        try:
            while not self._stop.is_set():
                item = self._prepared.get()
                if item is None:
                    return
                self._playing.set()
                au, trial, due, msgs = item
                if due is not None:
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                try:
                    self._play(msgs)
                except Exception as exc:  # noqa: BLE001 - one clip fails, the next plays
                    if self._stop.is_set():
                        return
                    self.get_logger().error(f"playing {au} trial {trial} failed: {type(exc).__name__}: {exc}")
                finally:
                    self.clips_played += 1
                    self._pending -= 1
                    self._playing.clear()
        finally:
            self.finished.set()

    def _play(self, msgs) -> None:
        """Publish a clip simulated at host time 0 as if it happened now: every sensor's stamps move by
        what its own clock advanced since the node started (the clocks are affine, so this is exact), which
        keeps sensor time, seq and the clock estimates continuous across clips."""
        rate = self.p["rate"]
        if not msgs:
            return
        h0, w0 = msgs[0].host_time_s, time.monotonic()  # the pacer's origin: the first message, now
        host_now = max(w0 - self._origin, self._last_clip_end)
        self._shift_us = {
            name: int(round(setup.clock.sensor_us_float(host_now) - setup.clock.sensor_us_float(0.0)))
            for name, setup in self.rig.setups.items()
        }
        self._last_clip_end = host_now + (msgs[-1].host_time_s - h0) + 0.001
        pacer = Pacer(rate, self._stop)
        for m in msgs:
            if not pacer.wait(int(round((m.host_time_s - h0) * 1e6))):
                return
            self._publish(m)

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
        shift = self._shift_us.get(m.sensor, 0)
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
