"""Replay node: republishes every message of a bag (the serialized bytes as stored) with its original
timing, scaled by ``rate``; the pip install's stand-in for `ros2 bag play`. Every bag is verified
(:meth:`~microexp.bags.reader.Bag.verify`) before anything is published. Gaps in recorded time longer than
``max_gap_s`` are shortened, one log line each (:mod:`microexp.playback`; ``keep_gaps`` waits them out).

Timing: a dedicated thread sleeps until shortly before each message is due and then waits actively, so
the inter-message error stays well under a millisecond on an idle machine.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from microexp.bags.reader import Bag
from microexp.bags.session import playable_bags
from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.playback import DEFAULT_MAX_GAP_S, Timeline
from microexp.ros.main import run_node
from microexp.ros.messages import msg_class
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.publishing import wait_acked
from microexp.ros.qos import LOSSLESS_QOS, SENSOR_QOS

PARAMS = (
    Param("bag", "", "bag folder (or a session folder: its segment bags are played in order)"),
    Param("rate", 1.0, "speed factor (1 = as recorded; 0 = as fast as possible)", min=0.0, max=1000.0),
    Param("loop", False, "start again at the end"),
    Param("topics", [""], "only these topics (empty = all)"),
    Param(
        "qos",
        "reliable",
        "QoS of the republished topics: reliable (keep all: a slow subscriber slows the "
        "replay down, nothing is lost) or sensor (best effort)",
        choices=("sensor", "reliable"),
    ),
    Param(
        "wait_for_subscribers_s",
        0.0,
        "before playing, wait up to this long for a subscriber on every topic",
        min=0.0,
        max=600.0,
        unit="s",
    ),
    Param("prefetch", 256, "messages read ahead of their due time by a reader thread", min=1, max=100000),
    Param(
        "spin_wait_us", 1500, "busy-wait this long before each message for precise timing", min=0, max=100000, unit="µs"
    ),
    Param(
        "max_gap_s",
        DEFAULT_MAX_GAP_S,
        "a step forward in recorded time longer than this (between segments, or a clock set forward while "
        "recording) is played as a pause of this length, one log line each; a step back longer than this (a "
        "clock set back) plays on at once",
        min=0.01,
        max=1e6,
        unit="s",
    ),
    Param("keep_gaps", False, "wait out steps forward longer than max_gap_s as recorded (still one log line each)"),
)


LOOP = ("loop", 0, b"")  # marker between passes of a looped replay


def bag_folders(path) -> list[Path]:
    """A bag folder itself, or the playable segment bags of a session folder in name order."""
    return playable_bags(path)[0]


class ReplayNode(MicroexpNode):
    def __init__(self, name: str = "replay", namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, PARAMS)
        if not self.p["bag"]:
            raise MicroexpError(f"{self.get_name()}: parameter bag: empty")
        rate = self.p["rate"]
        if rate != 0 and not 1e-3 <= rate <= 1000:
            raise MicroexpError(
                f"{self.get_name()}: parameter rate: {rate!r} is outside 0.001..1000 (0 = as fast as possible)"
            )
        self.bags, self.skipped = playable_bags(self.p["bag"])
        for line in self.skipped:
            self.get_logger().warning(line)
        self.error = ""
        wanted = {t for t in self.p["topics"] if t}
        self.types: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        for b in self.bags:
            with Bag(b) as bag:
                bag.verify()  # checksums, times and payload sizes: nothing of a damaged bag is published
                for t in bag.topics().values():
                    if not wanted or t.name in wanted:
                        self.types[t.name] = t.msgtype
                        self.counts[t.name] = self.counts.get(t.name, 0) + t.messages
        absent = sorted(wanted - set(self.types))
        if absent:
            available = set()
            for b in self.bags:
                with Bag(b) as bag:
                    available.update(bag.topics())
            available = sorted(available)
            raise MicroexpError(
                f"{self.get_name()}: parameter topics: {', '.join(absent)} not in {self.p['bag']} "
                f"(it has: {', '.join(available) or 'no topics'})"
            )
        qos = LOSSLESS_QOS if self.p["qos"] == "reliable" else SENSOR_QOS
        self.pubs = {t: self.create_publisher(msg_class(mt), t, qos) for t, mt in self.types.items()}
        self.published: dict[str, int] = {t: 0 for t in self.types}
        self.timing_errors_us: list[float] = []
        self.gaps: list = []  # the gaps in recorded time met (microexp.playback.Gap)
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = self.spawn(self._run, "replay")

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 10.0, settle_s: float = 2.0) -> None:
        end = time.monotonic() + timeout_s
        pubs = [p for t, p in self.pubs.items() if self.counts.get(t)]  # topics with something to replay
        while time.monotonic() < end and any(p.get_subscription_count() < count for p in pubs):
            time.sleep(0.02)
        # the publisher sees the subscription before the subscriber has matched the publisher back
        # (discovery is not symmetric); what is published in between is lost for volatile subscribers
        time.sleep(settle_s)

    def _read(self, out: "queue.Queue", stop: threading.Event) -> None:
        """Reader thread: decode the bags ahead of time (bounded by ``prefetch`` messages), so that reading a
        chunk never lands between a message's due time and its publish. A pass over every bag ends with a
        ``LOOP`` marker (the timing restarts); the stream ends with ``None`` (after an error: the error)."""

        def offer(item) -> bool:
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    pass
            return False

        end = None
        try:
            while not stop.is_set():
                for b in self.bags:
                    with Bag(b) as bag:
                        for topic, _, t_ns, raw in bag.messages_as_recorded(self.types):
                            if not offer((topic, t_ns, bytes(raw))):
                                return
                if not self.p["loop"] or not offer(LOOP):
                    break
        except MicroexpError as exc:
            end = exc
        finally:
            offer(end)

    def _run(self) -> None:
        rate, spin = self.p["rate"], self.p["spin_wait_us"] * 1e-6
        if self.p["wait_for_subscribers_s"] > 0:
            self.wait_for_subscribers(timeout_s=self.p["wait_for_subscribers_s"])
        pending: queue.Queue = queue.Queue(maxsize=max(1, self.p["prefetch"]))
        reader_stop = threading.Event()
        reader = threading.Thread(target=self._read, args=(pending, reader_stop), name="replay_reader", daemon=True)
        reader.start()
        timeline = Timeline(rate, self.p["max_gap_s"], self.p["keep_gaps"])
        self.gaps = timeline.gaps
        try:
            while not self._stop.is_set():
                item = pending.get()
                if item is None:
                    break
                if isinstance(item, MicroexpError):
                    self.error = str(item)
                    self.get_logger().error(f"replay stopped: {item}")
                    break
                if item is LOOP:
                    timeline.restart()  # the next pass starts its timing again
                    continue
                topic, t_ns, raw = item
                if rate > 0:
                    due, gap = timeline.due(topic, t_ns, time.perf_counter())
                    if gap is not None:
                        self.get_logger().warning(gap.line())
                    delay = due - time.perf_counter()
                    if delay > spin and self._stop.wait(delay - spin):
                        return
                    while time.perf_counter() < due:
                        pass
                    self.timing_errors_us.append((time.perf_counter() - due) * 1e6)
                if self._stop.is_set():
                    return
                self.pubs[topic].publish(raw)
                self.published[topic] += 1
        finally:
            reader_stop.set()
            if self.p["qos"] == "reliable" and not self._stop.is_set():
                self.drain()
            self.finished.set()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until every matched reliable subscriber has acknowledged what was published.

        A reliable writer keeps unacknowledged messages in its history; if the process exits first, a slow
        subscriber (a loaded machine, a recorder writing to a slow disk) never gets them.
        """
        left = wait_acked(list(self.pubs.values()), timeout_s)
        for topic in left:
            self.get_logger().warning(f"{topic}: not every subscriber acknowledged within {timeout_s:.0f} s")
        return not left

    def destroy_node(self):
        self._stop.set()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(ReplayNode, args)
