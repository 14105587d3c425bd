"""The one intake of subscribers that must keep up with a stream (recorder, inference, counter, benchmarks).

A reader thread of the node takes every waiting message of its subscriptions every ``period_s`` (rclpy's
``take_message``), instead of an executor callback per message: at thousands of packets per second the executor's
overhead per callback is what falls behind. The subscriptions stay the node's own (``ros2 node info`` lists them);
their callback group (:class:`~microexp.ros.node.ReaderThreadGroup`) keeps executors away from them.

:func:`publishers_qos` gives the QoS that follows a topic's publishers: reliable (KEEP_ALL) when every publisher
is reliable, else best effort (a reliable reader would not match a best-effort writer).
"""

from __future__ import annotations

import threading
from typing import Callable

from rclpy.qos import QoSProfile, ReliabilityPolicy

from microexp.ros.messages import msg_class
from microexp.ros.node import ReaderThreadGroup
from microexp.ros.qos import INTAKE_BEST_EFFORT_QOS, INTAKE_RELIABLE_QOS


def publishers_qos(
    node, topic: str, reliable: QoSProfile = INTAKE_RELIABLE_QOS, best_effort: QoSProfile = INTAKE_BEST_EFFORT_QOS
) -> tuple[QoSProfile | None, list[str]]:
    """``(qos, best_effort_publishers)`` for subscribing to ``topic``: ``reliable`` when every publisher of it is
    reliable, else ``best_effort``; None while it has no publisher. The second item names the best-effort
    publishers (namespace/name) when reliable ones publish too: counts taken best effort may fall short."""
    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None, []
    weak = [i for i in infos if i.qos_profile.reliability != ReliabilityPolicy.RELIABLE]
    if not weak:
        return reliable, []
    mixed = sorted({i.node_namespace.rstrip("/") + "/" + i.node_name for i in weak}) if len(weak) < len(infos) else []
    return best_effort, mixed


class Intake:
    """Subscriptions of ``node`` whose messages a thread takes: every ``period_s`` it takes everything waiting on
    each subscription and calls ``on_message(topic, message, info)`` (``raw``: the message as CDR bytes; ``info``:
    rclpy's message info, with ``received_timestamp``). ``on_turn()``, when given, runs before each turn (e.g.
    discovery); ``on_idle()`` after a turn (e.g. a batch flush). Messages of one topic arrive in order, on the
    intake's thread only."""

    def __init__(
        self,
        node,
        on_message: Callable[[str, object, dict], None],
        period_s: float = 0.001,
        raw: bool = True,
        name: str = "intake",
        on_turn: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ):
        self.node = node
        self.on_message = on_message
        self.period_s = period_s
        self.raw = raw
        self.name = name
        self.on_turn = on_turn
        self.on_idle = on_idle
        self.group = ReaderThreadGroup()
        self.subs: dict[str, object] = {}
        self._raw: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, topic: str, msgtype, qos: QoSProfile, raw: bool | None = None):
        """Subscribe to ``topic`` (``msgtype``: a class or 'package/msg/Type') for the thread to take from;
        ``raw``: its messages as CDR bytes (default: the intake's ``raw``)."""
        cls = msg_class(msgtype) if isinstance(msgtype, str) else msgtype
        raw = self.raw if raw is None else raw
        sub = self.node.create_subscription(cls, topic, lambda *_: None, qos, raw=raw, callback_group=self.group)
        self.subs[topic] = sub
        self._raw[topic] = raw
        return sub

    def take_waiting(self) -> int:
        """Take every message waiting now, on each subscription in turn; how many. Stops (returning -1) when a
        subscription is destroyed under it (the node is shutting down)."""
        n = 0
        for topic, sub in list(self.subs.items()):
            while True:
                try:
                    with sub.handle:
                        taken = sub.handle.take_message(sub.msg_type, self._raw.get(topic, self.raw))
                except Exception:  # noqa: BLE001 - the subscription is being destroyed
                    return -1
                if taken is None:
                    break
                self.on_message(topic, taken[0], taken[1])
                n += 1
        return n

    def start(self) -> "Intake":
        """Take on a thread of its own until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.on_turn is not None:
                self.on_turn()
            if self.take_waiting() < 0:
                return
            if self.on_idle is not None:
                self.on_idle()
            self._stop.wait(self.period_s)

    def stop(self, join_s: float = 5.0) -> None:
        """Stop the thread after its current turn (joined at most ``join_s``)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=join_s)
