"""A node that counts what arrives on every sensor topic of the graph (used by `play --count` and tests)."""
from __future__ import annotations

import threading
import time

from event_camera_msgs.msg import EventPacket
from rclpy.node import Node
from sensor_msgs.msg import Image, Imu

from microexp.bags.events import StreamStats
from microexp.events.codecs import make_decoder
from microexp.ros.base import RELIABLE_QOS

TYPES = {"event_camera_msgs/msg/EventPacket": EventPacket, "sensor_msgs/msg/Image": Image, "sensor_msgs/msg/Imu": Imu}


class TopicCounter(Node):
    """Subscribes (reliable) to every EventPacket, Image and Imu topic it discovers; decodes event payloads
    with one stateful decoder per topic and keeps :class:`StreamStats`."""

    def __init__(self, name: str = "microexp_counter", decode: bool = True):
        super().__init__(name)
        self.decode = decode
        self.stats: dict[str, StreamStats] = {}
        self.decoders: dict[str, object] = {}
        self.kinds: dict[str, str] = {}
        self.last_arrival = time.monotonic()
        self._lock = threading.Lock()
        self._subs = {}
        self.discover()
        self.timer = self.create_timer(0.1, self.discover)

    def discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs:
                continue
            for t in types:
                if t in TYPES:
                    self.kinds[topic] = t
                    self.stats[topic] = StreamStats()
                    self._subs[topic] = self.create_subscription(
                        TYPES[t], topic, lambda m, topic=topic: self.on_msg(topic, m), RELIABLE_QOS)

    def on_msg(self, topic: str, msg) -> None:
        with self._lock:
            self.last_arrival = time.monotonic()
            stats = self.stats[topic]
            if isinstance(msg, EventPacket):
                dec = self.decoders.get(topic)
                if dec is None:
                    dec = self.decoders[topic] = make_decoder(msg.encoding, msg.width, msg.height)
                events, triggers = dec.decode(bytes(msg.events), time_base=msg.time_base)
                stats.update(msg, events, triggers)
            else:
                stats.messages += 1

    def settle(self, expected: dict | None = None, quiet_s: float = 1.0, timeout_s: float = 30.0) -> None:
        """Wait until the expected message counts arrived, or nothing arrived for ``quiet_s``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                done = expected and all(self.stats.get(t) and self.stats[t].messages >= c for t, c in expected.items())
                quiet = time.monotonic() - self.last_arrival > quiet_s
            if done or (quiet and not expected):
                return
            time.sleep(0.05)

    def summary(self) -> dict:
        out = {}
        with self._lock:
            for topic, s in sorted(self.stats.items()):
                kind = self.kinds[topic]
                if kind.endswith("EventPacket"):
                    out[topic] = {"type": kind, "messages": s.messages, "events": s.events, "on_events": s.on_events,
                                  "triggers": s.triggers, "seq_gaps": s.seq_gaps, "t_first_us": s.t_first_us,
                                  "t_last_us": s.t_last_us}
                else:
                    out[topic] = {"type": kind, "messages": s.messages}
                    if kind.endswith("Image"):
                        out[topic]["frames"] = s.messages
        return out
