"""The one executor runner of microexp: nodes spun by one rclpy executor, on a background thread
(:meth:`Runner.start`, composed graphs, commands and tests) or in the calling thread (:meth:`Runner.spin`, a
node executable's ``main()``)."""

from __future__ import annotations

import sys
import threading
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, ShutdownException, SingleThreadedExecutor

from microexp.ros import lifecycle

EXECUTORS = ("single", "multi")


class Runner:
    """Nodes spun by one executor: ``single`` (rclpy's SingleThreadedExecutor) or ``multi``
    (MultiThreadedExecutor with ``threads`` threads). Initialises rclpy when it is not yet.

    The executor turns in a loop of ``spin_once`` calls that checks a stop flag, so :meth:`close` first stops
    and joins the spinning thread, then shuts the executor down (waiting for callbacks still running on its
    threads), destroys the nodes (last added first) and shuts rclpy down: nothing is destroyed while a thread is
    inside rclpy's wait, and no thread is left inside rclpy when the interpreter exits.
    """

    def __init__(self, executor: str = "multi", threads: int = 6, period_s: float = 0.05):
        if executor not in EXECUTORS:
            raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
        lifecycle.init()  # when rclpy is not initialised yet: without rclpy's signal handlers
        self.executor = MultiThreadedExecutor(num_threads=threads) if executor == "multi" else SingleThreadedExecutor()
        self.nodes: list = []
        self.period_s = period_s
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, node):
        """Spin ``node`` too; returns it. :meth:`close` destroys it."""
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def spin(self, until=None) -> None:
        """Spin in the calling thread until :meth:`stop`, rclpy's shutdown, or ``until()`` returns true.
        KeyboardInterrupt (a signal, :mod:`microexp.ros.lifecycle`) and ExternalShutdownException reach the
        caller."""
        self._running.set()
        while self._running.is_set() and rclpy.ok() and not (until is not None and until()):
            self.executor.spin_once(timeout_sec=self.period_s)

    def start(self) -> "Runner":
        """Spin on a background thread until :meth:`stop` or :meth:`close`."""
        self._running.set()
        self._thread = threading.Thread(target=self._spin_background, name="executor", daemon=True)
        self._thread.start()
        return self

    def _spin_background(self) -> None:
        try:
            self.spin()
        except (ExternalShutdownException, ShutdownException):  # rclpy shut down elsewhere: the spinning ends
            pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop spinning, join the background thread, wait for callbacks still running on the executor's threads,
        and shut the executor down; the nodes stay."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        self._drain(timeout_s)
        self.executor.shutdown(timeout_sec=timeout_s)

    def _drain(self, timeout_s: float) -> None:
        """Wait for the callbacks that a MultiThreadedExecutor handed to its thread pool and take their outcome.

        rclpy 7.1's ``Executor.shutdown`` does not wait for them: it destroys the executor's guard condition while
        they may still run, and such a callback then fails inside rclpy ("cannot use Destroyable because
        destruction was requested"), printed at exit as an exception never retrieved. A callback's own error is
        printed here, one line, as the executor would have raised it on its next turn.
        """
        tasks = list(getattr(self.executor, "_futures", ()))  # the MultiThreadedExecutor's handlers in flight
        deadline = time.monotonic() + timeout_s
        while any(not t.done() for t in tasks) and time.monotonic() < deadline:
            time.sleep(0.005)
        for task in tasks:
            if task.done() and task.exception() is not None:
                print(f"microexp: a callback raised as the nodes stopped: {task.exception()!r}", file=sys.stderr)

    def close(self, timeout_s: float = 5.0, reason: str | None = None) -> None:
        """The stop of :mod:`microexp.ros.lifecycle`: :meth:`stop`, mark every node stopping and give it its
        ``exit_reason`` (``reason``, else the signal received, if any), destroy the nodes last added first (a
        failing destroy is one line and does not stop the others), shut rclpy down."""
        self.stop(timeout_s)
        reason = reason or lifecycle.reason()
        for node in self.nodes:
            stopping = getattr(node, "stopping", None)
            if stopping is not None:
                stopping.set()
            if reason and hasattr(node, "exit_reason") and not node.exit_reason:
                node.exit_reason = reason
        for node in reversed(self.nodes):
            try:
                node.destroy_node()
            except Exception as exc:  # noqa: BLE001 - tear-down goes on
                print(f"microexp: {node.get_name()}: clean-up failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        self.nodes = []
        lifecycle.shutdown()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
