"""Shared node plumbing: parameter declaration from :mod:`microexp.config` specs, QoS profiles, main()."""

from __future__ import annotations

import functools
import sys
import threading
from typing import Iterable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import CallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from microexp.config import Param
from microexp.errors import MicroexpError, ParameterError
from microexp.ros.dds import use_profile
from microexp.ros.runner import Runner

# Sensor streams: best effort, shallow, never blocks the publisher (the ecosystem's sensor-data QoS).
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Streams that must not lose a message between processes on one host (recording, tests, labels).
RELIABLE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# History depth of a reliable sensor stream per kind: how far a subscriber (the recorder) may fall behind
# before the publisher overwrites what it has not acknowledged. Events and IMU: 10 s of 1 kHz packets;
# images: 10 s at 30 fps (a 1080p frame is 6 MB: depth is memory when a subscriber stalls).
STREAM_DEPTH = {"events": 10000, "imu": 10000, "image": 300, "other": 1000}
# Intake of a recorder or counter: everything the publisher sends is kept until taken (reliable: KEEP_ALL,
# the publisher waits when the reader's resource limits are reached; best effort: a deep KEEP_LAST).
INTAKE_RELIABLE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
INTAKE_BEST_EFFORT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10000,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Replay and benchmarks: nothing may be lost, a slow reader slows the writer down instead (KEEP_ALL).
LOSSLESS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class MicroexpNode(Node):
    """Base of microexp's nodes: a node whose constructor raises (a bad parameter, a file that is not what it
    should be) takes its publishers, subscriptions and services off the graph before the error propagates.
    Without this the half-built node stays on the graph until the garbage collector finds it, and other
    processes on the domain keep matching it: a counter or recorder would see a best-effort publisher that
    never sends and lower its own QoS to match it."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def guarded(self, *args, **kw):
            try:
                init(self, *args, **kw)
            except BaseException:
                self._abandon()
                raise

        cls.__init__ = guarded

    def context_gone(self) -> bool:
        """True once the node's rclpy context is shut down: rclpy's SIGINT/SIGTERM handler does that before the
        node is stopped, so a publish from one of the node's own threads can fail in between. Such a thread
        then ends quietly instead of printing a traceback or reporting an error."""
        try:
            return not self.context.ok()
        except Exception:  # noqa: BLE001 - no context left at all
            return True

    def _abandon(self) -> None:
        """Take what a failed constructor made off the graph: stop the node's own threads (its ``_stop*``
        events) and destroy its rclpy entities. Runs once, however many constructors in the chain failed."""
        if self.__dict__.get("_abandoned"):
            return
        self.__dict__["_abandoned"] = True
        for name, value in list(self.__dict__.items()):
            if name.startswith("_stop") and isinstance(value, threading.Event):
                value.set()
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


def qos_named(name: str, kind: str = "events") -> QoSProfile:
    """'sensor' (best effort, shallow) or 'reliable' (history depth by stream ``kind``: :data:`STREAM_DEPTH`)."""
    if name == "sensor":
        return SENSOR_QOS
    if name == "reliable":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=STREAM_DEPTH.get(kind, STREAM_DEPTH["other"]),
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE,
        )
    raise ParameterError(f"parameter qos: {name!r} is not one of 'sensor', 'reliable'")


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


def wait_for_subscribers(node, stop, param: str = "wait_for_subscribers_s") -> None:
    """Block until every publisher of ``node`` has a subscriber, at most ``node.p[param]`` seconds (file
    playback, also of a RAW file opened as a device, so that a counting or recording subscriber sees the first
    message too)."""
    import time

    limit = node.p.get(param, 0.0) if hasattr(node, "p") else 0.0
    params = getattr(node, "p", {})
    if params.get("mode", "file") != "file" and not params.get("device_file"):
        return  # a live camera does not wait: its data exists whether or not anyone listens
    end = time.monotonic() + limit
    pubs = [p for p in node.publishers if not p.topic_name.endswith(("/rosout", "/parameter_events"))]
    while limit and time.monotonic() < end and not stop.is_set():
        if all(p.get_subscription_count() > 0 for p in pubs):
            stop.wait(0.5)  # discovery is not symmetric: let the subscriber match us back
            return
        stop.wait(0.02)


def _signal_when_parent_dies(sig) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies. ``ros2 launch`` stopped by
    SIGTERM cancels itself without stopping its nodes; this way they still shut down cleanly (and a recorder
    still ends its session)."""
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent is gone already
            os.kill(os.getpid(), sig)
    except (OSError, AttributeError):  # not Linux: nothing to set up
        pass


def data_publishers(node) -> list:
    """The node's publishers other than rosout and parameter events."""
    return [p for p in node.publishers if not p.topic_name.endswith(("/rosout", "/parameter_events"))]


def wait_acked(pubs, timeout_s: float, stop=None) -> list[str]:
    """Wait until every reliable subscriber of each publisher in ``pubs`` has acknowledged everything published,
    at most ``timeout_s`` (or until ``stop``, a threading.Event, is set); returns the topics still waiting
    (empty: all acknowledged).

    A reliable writer keeps unacknowledged messages in its history and loses them when it is destroyed: a
    subscriber that lags (a loaded machine, a recorder on a slow disk) would miss the end of a stream. The wait
    polls in short slices: rclpy holds the GIL inside ``wait_for_all_acked``, and one long call freezes every
    other thread of the process for as long as it waits."""
    import time

    from rclpy.duration import Duration

    slice_ = Duration(nanoseconds=1_000_000)
    end = time.monotonic() + timeout_s
    left = list(pubs)
    while left:
        try:
            left = [p for p in left if not p.wait_for_all_acked(slice_)]
        except Exception:  # noqa: BLE001 - rclpy is shutting down: nothing left to wait for
            return []
        if not left or time.monotonic() >= end or (stop is not None and stop.is_set()):
            break
        time.sleep(0.005)
    return [p.topic_name for p in left]


def _announce_end(node) -> None:
    """A playing node (one with ``finished`` and ``published``) logs one line when its playback ends:
    ``playback ended; published {"topic": count, ...}`` (JSON), which `microexp bench load` reads."""
    import json
    import threading

    finished = getattr(node, "finished", None)
    if not isinstance(finished, threading.Event) or not isinstance(getattr(node, "published", None), dict):
        return

    def watch():
        finished.wait()
        # "ended" = every reliable subscriber holds what was published (a lagging reader still gets it)
        wait_acked(data_publishers(node), 60.0)
        if not node.context.ok():
            return
        node.get_logger().info("playback ended; published " + json.dumps(dict(node.published)))

    threading.Thread(target=watch, name="announce_end", daemon=True).start()


def run_node(factory, args: list[str] | None = None, done=None, exit_code=None) -> int:
    """``main()`` of a node executable: DDS profile (:mod:`microexp.ros.dds`), init, spin until Ctrl-C, SIGTERM,
    shutdown or ``done(node)``, clean up, one-line errors. Before ``destroy_node()`` the node's ``exit_reason``
    says why it stops (a recorder writes it to its manifest); further SIGINT/SIGTERM during the clean-up are
    ignored (``ros2 launch`` and the terminal both send SIGINT on Ctrl-C), so the clean-up finishes and no
    traceback appears."""
    import signal

    # Signals are noted here and handled by rclpy's own handlers (which shut the context down and wake the
    # executor); the note says which one it was, also when the shutdown reaches the executor between its
    # check of the context and its wait (the wait then fails with "context is not valid").
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    use_profile()
    _signal_when_parent_dies(signal.SIGTERM)
    rclpy.init(args=args)
    runner = Runner("single", period_s=0.1)
    node = None
    reason = "node ended"
    try:
        node = factory()
        _announce_end(node)
        runner.executor.add_node(node)  # destroyed below, after its exit_reason is set
        runner.spin(until=lambda: bool(received) or (done is not None and done(node)))
        if done is not None and not received and rclpy.ok():
            reason = "done"
    except KeyboardInterrupt:
        reason = "interrupted (SIGINT)"
    except ExternalShutdownException:
        reason = "terminated (SIGTERM, or its ros2 launch / ros2 run ended)"
    except MicroexpError as exc:
        if not received:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    except Exception:
        if rclpy.ok() and not received:
            raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        if received:
            reason = (
                "interrupted (SIGINT)"
                if received[0] == signal.SIGINT
                else "terminated (SIGTERM, or its ros2 launch / ros2 run ended)"
            )
        runner.stop()
        if node is not None:
            node.exit_reason = reason
            try:
                node.destroy_node()
            except Exception as exc:  # noqa: BLE001 - clean-up after a shutdown: one line, no traceback
                print(f"error: {node.get_name()}: clean-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        runner.close()
    if exit_code is not None and node is not None:
        return exit_code(node)
    return 0
