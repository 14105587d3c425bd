"""The base class of microexp's nodes (threads of their own, a stop in order, a failed constructor taken off the
graph), the callback group of reader threads, and parameters declared from :mod:`microexp.config` specs."""

from __future__ import annotations

import threading
from typing import Iterable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node

from microexp.config import Param
from microexp.errors import ParameterError


class _OffTheGraphOnFailure(type):
    """Metaclass of :class:`MicroexpNode`: the construction of a node is one call here, so a constructor that
    raises anywhere in the chain of ``__init__`` is caught once, and the half-built node taken off the graph."""

    def __call__(cls, *args, **kwargs):
        node = cls.__new__(cls)
        try:
            node.__init__(*args, **kwargs)
        except BaseException:
            node._abandon()
            raise
        return node


class MicroexpNode(Node, metaclass=_OffTheGraphOnFailure):
    """Base of microexp's nodes: a node whose constructor raises (a bad parameter, a file that is not what it
    should be) takes its publishers, subscriptions and services off the graph before the error propagates.
    Without this the half-built node stays on the graph until the garbage collector finds it, and other
    processes on the domain keep matching it: a counter or recorder would see a best-effort publisher that
    never sends and lower its own QoS to match it."""

    def __init__(self, *args, **kwargs):
        self.stopping = threading.Event()  # set once the node is being destroyed
        self._threads: list[threading.Thread] = []
        super().__init__(*args, **kwargs)

    def spawn(self, target, name: str) -> threading.Thread:
        """Run ``target`` on a thread of the node's own (a daemon: a stuck driver never holds the process),
        joined by :meth:`destroy_node`. An exception raised once the node is stopping (a publisher destroyed
        under a thread that outlived the join) ends the thread quietly; any other is logged, one line, and
        raised."""

        def run() -> None:
            try:
                target()
            except Exception as exc:
                if self.stopping.is_set():
                    return
                self.get_logger().error(f"thread {name} failed: {type(exc).__name__}: {exc}")
                raise

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def destroy_node(self, join_s: float = 2.0):
        """Mark the node stopping, set its ``_stop*`` events, join its threads (:meth:`spawn`, at most
        ``join_s`` each) and take it off the graph. A subclass stops its own work first, then calls this."""
        self.stopping.set()
        self._set_stop_events()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=join_s)
        return super().destroy_node()

    def _set_stop_events(self) -> None:
        for name, value in list(self.__dict__.items()):
            if name.startswith("_stop") and isinstance(value, threading.Event):
                value.set()

    def _abandon(self) -> None:
        """Take what a failed constructor made off the graph: stop the node's own threads (its ``_stop*``
        events) and destroy its rclpy entities."""
        self._set_stop_events()
        try:
            Node.destroy_node(self)
        except Exception:  # noqa: BLE001 - Node.__init__ itself failed: nothing reached the graph
            pass


class ReaderThreadGroup(CallbackGroup):
    """Callback group of subscriptions that a reader thread of the node takes messages from itself: rclpy's
    executors wait only on entities whose group can execute, so they leave these alone. The subscription stays
    the node's own (``ros2 node info`` lists it under the node)."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


def _descriptor(p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description + (f" [{p.unit}]" if p.unit else ""))
    if p.choices:
        d.additional_constraints = "one of: " + ", ".join(map(str, p.choices))
    if isinstance(p.default, bool):
        return d
    if isinstance(p.default, int) and (p.min is not None or p.max is not None):
        d.integer_range = [
            IntegerRange(
                from_value=int(p.min if p.min is not None else -(2**63)),
                to_value=int(p.max if p.max is not None else 2**63 - 1),
                step=0,
            )
        ]
    elif isinstance(p.default, float) and (p.min is not None or p.max is not None):
        d.floating_point_range = [
            FloatingPointRange(
                from_value=float(p.min if p.min is not None else -1e308),
                to_value=float(p.max if p.max is not None else 1e308),
                step=0.0,
            )
        ]
    return d


def declare_params(node: Node, specs: Iterable[Param]) -> dict:
    """Declare every parameter of ``specs`` on ``node`` (described, with ranges) and return their values,
    checked: a bad value raises ParameterError naming the node and parameter."""
    values = {}
    for p in specs:
        default = list(p.default) if isinstance(p.default, tuple) else p.default
        try:
            param = node.declare_parameter(p.name, default, _descriptor(p))
        except Exception as exc:  # rclpy's range/type errors: report them as ours
            raise ParameterError(f"{node.get_name()}: parameter {p.name}: {exc}") from None
        values[p.name] = p.check(param.value, where=f"{node.get_name()}: ")
    return values
