"""Start and stop of rclpy in one place: one signal policy for every node executable, command and benchmark.

rclpy is initialised here without its own signal handlers (``SignalHandlerOptions.NO``). rclpy's handler shuts
the context down the moment SIGINT or SIGTERM arrives, while the nodes' threads still run and publish; every
thread then had to guard itself against a context that vanished under it. Here a signal is only noted:

- ``mode="note"`` (a node executable, :func:`microexp.ros.main.run_node`): the spin loop sees the note and ends;
- ``mode="raise"`` (a command): the first signal raises KeyboardInterrupt in the main thread, SIGTERM exactly as
  SIGINT, so the command's clean-up runs the same way for both. Later signals are noted and ignored.

Either way the order of the stop is the same: the executor stops spinning, each node is destroyed (it stops and
joins its own threads first; a recorder ends its session with :func:`reason` as the end reason), and rclpy's
context is shut down last (:meth:`microexp.ros.runner.Runner.close`).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}

_received: list[int] = []
_mode = {"value": "raise"}
stop_requested = threading.Event()  # set by the first signal: threads that wait on it end their wait


def _handler(signum, _frame) -> None:
    first = not _received
    _received.append(signum)
    stop_requested.set()
    if first and _mode["value"] == "raise":
        raise KeyboardInterrupt(NAMES.get(signum, str(signum)))


def install(mode: str = "raise") -> None:
    """Handle SIGINT and SIGTERM as described above (``mode``: 'note' or 'raise'). Only the main thread can set
    signal handlers: elsewhere (a test's thread) nothing changes."""
    if mode not in ("note", "raise"):
        raise ValueError(f"mode {mode!r}: expected 'note' or 'raise'")
    _mode["value"] = mode
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def init(args: list[str] | None = None, mode: str = "raise") -> None:
    """Initialise rclpy without rclpy's signal handlers and :func:`install` ours; nothing when rclpy is
    initialised already (its initialiser chose the policy). A fresh context forgets the signals an earlier one
    received (tests run several in one process)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    if not rclpy.ok():
        _received.clear()
        stop_requested.clear()
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        install(mode)


def received() -> int | None:
    """The first signal received since rclpy was initialised (None: none)."""
    return _received[0] if _received else None


def reason(default: str = "") -> str:
    """Why the process stops, as a recorder writes it to its manifest: 'interrupted (SIGINT)', 'terminated
    (SIGTERM)', or ``default`` when no signal arrived."""
    sig = received()
    if sig is None:
        return default
    return "interrupted (SIGINT)" if sig == signal.SIGINT else f"terminated ({NAMES.get(sig, sig)})"


def shutdown() -> None:
    """Shut rclpy's default context down when it is still up (the last step of a stop)."""
    import rclpy

    if rclpy.ok():
        try:
            rclpy.shutdown()
        except Exception:  # noqa: BLE001 - shut down by another thread in between
            pass
