"""``main()`` of the node executables: init, spin, and the stop in the order of :mod:`microexp.ros.lifecycle`."""

from __future__ import annotations

import sys

from rclpy.executors import ExternalShutdownException

from microexp.errors import MicroexpError
from microexp.ros.dds import use_profile
from microexp.ros.publishing import data_publishers, wait_acked
from microexp.ros.runner import Runner


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
        wait_acked(data_publishers(node), 60.0, node.stopping)
        if node.stopping.is_set():
            return
        node.get_logger().info("playback ended; published " + json.dumps(dict(node.published)))

    threading.Thread(target=watch, name="announce_end", daemon=True).start()


def run_node(factory, args: list[str] | None = None, done=None, exit_code=None) -> int:
    """``main()`` of a node executable: DDS profile (:mod:`microexp.ros.dds`), init, spin until SIGINT, SIGTERM
    or ``done(node)``, then the stop in the order of :mod:`microexp.ros.lifecycle` (the node's ``exit_reason``
    says why it stops: a recorder writes it to its manifest). Errors are one line."""
    import signal

    from microexp.ros import lifecycle

    use_profile()
    _signal_when_parent_dies(signal.SIGTERM)
    lifecycle.init(args, mode="note")
    runner = Runner("single", period_s=0.1)
    node = None
    reason = "node ended"
    code = 0
    try:
        node = factory()
        _announce_end(node)
        runner.add(node)
        runner.spin(until=lambda: lifecycle.received() is not None or (done is not None and done(node)))
        if done is not None and lifecycle.received() is None:
            reason = "done"
    except ExternalShutdownException:  # rclpy shut down by someone else
        reason = "terminated (rclpy shut down)"
    except MicroexpError as exc:
        if lifecycle.received() is None:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
    except Exception:
        if lifecycle.received() is None:
            raise
    finally:
        runner.close(reason=lifecycle.reason(reason))
    if code == 0 and exit_code is not None and node is not None:
        return exit_code(node)
    return code
