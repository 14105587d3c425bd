"""The skeleton the sensor nodes (davis346, evk4, webcam, synthetic) share: declared parameters, per-topic
published counts, the sensor clocks, the latched ``~/sensor_info``, the source thread with its ``finished``
and stop events, the file-playback error handling and the stop on ``destroy_node()``. Each node keeps its own
sources and message building."""

from __future__ import annotations

import json
import threading
from typing import Callable, Iterable

from std_msgs.msg import String

from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.publishing import data_publishers, wait_acked, wait_for_subscribers
from microexp.ros.qos import LATCHED_QOS
from microexp.ros.sync import SensorClock

# how long the end of a stream waits for its subscribers' acknowledgements; on destroy_node() (shorter)
DRAIN_S = 30.0
STOP_DRAIN_S = 2.0


def wait_param(what: str = "file playback") -> Param:
    """The ``wait_for_subscribers_s`` parameter of a sensor node; ``what`` names what waits."""
    return Param(
        "wait_for_subscribers_s",
        5.0,
        f"{what} waits up to this long for a subscriber on every topic",
        min=0.0,
        max=600.0,
        unit="s",
    )


def retry_param(what: str = "an absent camera") -> Param:
    """The ``retry_interval_s`` parameter of a sensor node with a camera."""
    return Param("retry_interval_s", 2.0, f"wait between attempts to open {what}", min=0.1, max=3600.0, unit="s")


class SensorNode(MicroexpNode):
    """A node publishing one or more sensors' streams from a source thread.

    Attributes the tools read: ``p`` (parameter values), ``published`` (messages per topic), ``finished`` (set
    when the source thread ends), ``playback_error`` (why file playback stopped early, '' when it did not:
    `microexp play` exits 1 on it), ``open_failures`` (failed attempts to open a camera), ``clock_sync`` (the
    first sensor clock)."""

    def __init__(self, name: str, params: Iterable[Param], namespace: str = "", parameter_overrides=None):
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.p = declare_params(self, params)
        self.published: dict[str, int] = {}
        self.seq = 0
        self.open_failures = 0
        self.playback_error = ""
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.clock_sync: SensorClock | None = None
        self.sensor_info_pub = None

    # -- set-up ----------------------------------------------------------------------------------------------
    def add_clock(self, sensor: str, topic: str = "~/sync_status") -> SensorClock:
        """The clock estimate of ``sensor`` with its status topic; the first one is ``clock_sync``."""
        clock = SensorClock(self, sensor, topic=topic)
        if self.clock_sync is None:
            self.clock_sync = clock
        return clock

    def add_sensor_info(self) -> None:
        """Create ``~/sensor_info`` (std_msgs/String, latched); :meth:`publish_sensor_info` fills it."""
        self.sensor_info_pub = self.create_publisher(String, "~/sensor_info", LATCHED_QOS)

    def start_source(self, target: Callable[[], None], name: str) -> None:
        """Run ``target`` on the node's source thread (:meth:`~microexp.ros.node.MicroexpNode.spawn`)."""
        self._thread = self.spawn(target, name)

    # -- while running ---------------------------------------------------------------------------------------
    def publish_sensor_info(self, sensor: str, topic: str, info: dict) -> None:
        """Publish ``{"name": sensor, "topic": topic, **info}`` on ``~/sensor_info`` (kept as ``sensor_info``)."""
        self.sensor_info = {"name": sensor, "topic": topic, **info}
        self.sensor_info_pub.publish(String(data=json.dumps(self.sensor_info)))

    def count(self, pub, n: int = 1) -> None:
        """``n`` more messages published on ``pub``."""
        self.published[pub.topic_name] = self.published.get(pub.topic_name, 0) + n

    def stamp(self, clock: SensorClock, sensor_us: int, ready_us: int | None = None) -> tuple[int, int]:
        """(sec, nanosec) of sensor time ``sensor_us`` through ``clock``, the arrival being now."""
        ns = clock.stamp(int(sensor_us), self.get_clock().now().nanoseconds, ready_us)
        return divmod(int(ns), 1_000_000_000)

    def wait_for_subscribers(self) -> None:
        """File playback waits up to ``wait_for_subscribers_s`` for a subscriber on every topic."""
        wait_for_subscribers(self, self._stop)

    def retry_later(self, message: str) -> bool:
        """A camera could not be opened or stopped delivering: count it, log ``message``, wait
        ``retry_interval_s``; true when the node is stopping instead."""
        self.open_failures += 1
        self.get_logger().error(message)
        return self._stop.wait(self.p["retry_interval_s"])

    def drain(self, timeout_s: float = DRAIN_S) -> bool:
        """Wait until every reliable subscriber has acknowledged what this node published, at most
        ``timeout_s`` (:func:`~microexp.ros.publishing.wait_acked`): a publisher destroyed earlier takes what a
        lagging subscriber has not fetched yet with it. False (and one warning) when some were left."""
        left = wait_acked(data_publishers(self), timeout_s)
        if left:
            self.get_logger().warning(
                f"{', '.join(left)}: a subscriber had not acknowledged every message {timeout_s:g} s after the "
                "stream ended; what it has not fetched is lost when this node stops"
            )
        return not left

    def play_file(self, body: Callable[[], None], summary: Callable[[], str]) -> None:
        """The source thread of file playback: wait for subscribers, run ``body``; an error in the file stops
        playback with ``playback_error`` set and logged; at the end log ``summary()``, wait for the subscribers
        to acknowledge everything (:meth:`drain`) and set ``finished``."""
        self.wait_for_subscribers()
        try:
            body()
        except Exception as exc:
            if self.stopping.is_set():
                pass  # the node was destroyed mid-publish: a stop, not a playback error
            elif isinstance(exc, MicroexpError):
                self.playback_error = f"playback stopped: {exc}"
                self.get_logger().error(self.playback_error)
            else:  # a file that turns corrupt mid-stream: stop cleanly with a message
                self.playback_error = f"playback stopped: {self.p['file']}: {exc}"
                self.get_logger().error(self.playback_error)
        finally:
            self.get_logger().info(summary())
            if not self._stop.is_set():
                self.drain()
            self.finished.set()

    def stop_publishing(self) -> None:
        """Stop the source thread (the node stays)."""
        self._stop.set()

    def destroy_node(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.drain(STOP_DRAIN_S)
        return super().destroy_node()
