"""`microexp watch`: a live terminal view of an AU topic (microexp_msgs/AUPrediction).

Shows, for the newest window: the top-3 AUs with bars and the smoothed decision while a movement is under way
("no movement" at rest, "no face" without a face), events, face state, latency (this window's and p50/p99 of
the recent ones), the prediction rate, and skipped windows: from the publisher's ``diagnostics``
(``<namespace>/diagnostics`` next to ``.../au``), else counted from holes in the window sequence. Below them, the
newest AU events (spotted movements and their verdicts, ``.../au_events`` next to ``.../au``). It subscribes best effort, so it works with any publisher's QoS, in any ROS graph on the
same domain; without ``--topic`` it picks the first AUPrediction topic it discovers.

On a terminal the view is redrawn in place; otherwise (a pipe, ``--once``, ``--count N``) each message is
printed as a block, and the command exits after the first one (``--once``) or N of them (``--count``).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Optional

AU_TYPE = "microexp_msgs/msg/AUPrediction"
BAR = 24


def add_arguments(parser) -> None:
    parser.add_argument("--topic", default=None, help="AUPrediction topic (default: the first one discovered)")
    parser.add_argument(
        "--diagnostics",
        default=None,
        help="DiagnosticArray topic of the publisher (default: .../diagnostics beside .../au)",
    )
    parser.add_argument("--once", action="store_true", help="print one prediction and exit")
    parser.add_argument("--count", type=int, default=0, help="print N predictions and exit")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="stop after this many seconds (0 = never); exit code 1 when --once/--count did not "
        "get its predictions by then",
    )
    parser.add_argument("--plain", action="store_true", help="never redraw in place (print blocks)")


def events_topic_for(au_topic: str) -> Optional[str]:
    """``/ns/node/au`` -> ``/ns/node/au_events``; None when the topic is not named ``.../au``."""
    return au_topic + "_events" if au_topic.endswith("/au") else None


def diagnostics_topic_for(au_topic: str) -> Optional[str]:
    """``/ns/node/au`` -> ``/ns/node/diagnostics``; None when the topic is not named ``.../au``."""
    if au_topic.endswith("/au"):
        return au_topic[: -len("au")] + "diagnostics"
    return None


class WatchState:
    """What the view shows beyond the newest message: rates, latency history, window holes, diagnostics."""

    def __init__(self, history: int = 300):
        self.latencies: deque = deque(maxlen=history)
        self.arrivals: deque = deque(maxlen=history)
        self.messages = 0
        self.window_holes = 0
        self._last_end: Optional[int] = None
        self.diagnostics: dict = {}
        self.events: deque = deque(maxlen=5)  # newest AU events, newest last
        self.event_count = 0

    def add_event(self, msg) -> None:
        self.events.append(msg)
        self.event_count += 1

    def add(self, msg, now: Optional[float] = None) -> None:
        self.messages += 1
        self.latencies.append(float(msg.latency_ms))
        self.arrivals.append(time.monotonic() if now is None else now)
        start, end = int(msg.window_start_us), int(msg.window_end_us)
        if self._last_end is not None and start > self._last_end and end > start:
            self.window_holes += (start - self._last_end) // (end - start)
        self._last_end = end

    def set_diagnostics(self, array_msg) -> None:
        for status in array_msg.status:
            self.diagnostics = {kv.key: kv.value for kv in status.values}
            self.diagnostics["_message"] = status.message
            return

    def rate_hz(self) -> float:
        if len(self.arrivals) < 2 or self.arrivals[-1] <= self.arrivals[0]:
            return 0.0
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])

    def latency_percentiles(self) -> tuple:
        if not self.latencies:
            return (float("nan"), float("nan"))
        s = sorted(self.latencies)
        return (s[len(s) // 2], s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))])


def _bar(value: float, full: float, width: int = BAR) -> str:
    filled = 0 if full <= 0 else int(round(width * max(0.0, min(1.0, value / full))))
    return "█" * filled + "·" * (width - filled)


def render(msg, topic: str, state: WatchState) -> str:
    """The text of one view of ``msg`` (an AUPrediction)."""
    from microexp.aus import AU_NAMES

    codes = list(msg.au_codes)
    probs = [float(p) for p in msg.probabilities]
    smoothed = [float(p) for p in msg.smoothed_probabilities]
    top1 = max(probs) if probs else 0.0
    lines = [
        f"{topic}  sensor {msg.sensor or '?'}  model {msg.model_id or '?'}",
        f"window {msg.window_start_us / 1e6:.3f}-{msg.window_end_us / 1e6:.3f} s  events {msg.events}  "
        f"face {'yes' if msg.face_found else 'no'}",
    ]
    state_name = str(getattr(msg, "state", "") or "movement")
    if state_name == "rest":
        lines.append("  no movement")
    elif state_name == "no_face":
        lines.append("  no face: no prediction")
    for rank, idx in enumerate(list(msg.top3)[:3] if state_name == "movement" else []):
        idx = int(idx)
        if idx >= len(codes):
            continue
        label = f"AU{codes[idx]}"
        lines.append(
            f"  {rank + 1}. {label:<5} {AU_NAMES[idx] if idx < len(AU_NAMES) else '':<22} "
            f"{_bar(probs[idx], top1)} {probs[idx]:.3f}"
        )
    s1 = int(msg.smoothed_top1)
    if s1 < len(codes) and smoothed and state_name == "movement":
        lines.append(
            f"  smoothed over {msg.smoothed_windows} windows: AU{codes[s1]} "
            f"{AU_NAMES[s1] if s1 < len(AU_NAMES) else ''} {smoothed[s1]:.3f}"
        )
    p50, p99 = state.latency_percentiles()
    d = state.diagnostics
    skipped = d.get("skipped", None)
    skipped_text = f"skipped {skipped}" if skipped is not None else f"skipped ≥{state.window_holes} (window holes)"
    resets = f"  resets {d['resets']}" if "resets" in d else ""
    lines.append(
        f"latency {float(msg.latency_ms):.2f} ms (p50 {p50:.2f} / p99 {p99:.2f} over {len(state.latencies)})"
        f"  {state.rate_hz():.1f} windows/s  {skipped_text}{resets}"
    )
    if d.get("_message"):
        lines.append(f"node: {d['_message']}")
    lines.append(f"AU events: {state.event_count}" + (" (newest first)" if state.events else ""))
    for e in reversed(state.events):
        top = ", ".join(f"AU{int(e.au_codes[i])}" for i in e.top3 if i < len(e.au_codes))
        lines.append(
            f"  {e.au:<5} {float(e.confidence):.2f}  apex {int(e.apex_us) / 1e6:.3f} s  "
            f"{(int(e.offset_us) - int(e.onset_us)) / 1e3:.0f} ms  top-3 {top}"
        )
    return "\n".join(lines)


def _discover(node, executor, timeout: float) -> Optional[str]:
    deadline = None if timeout <= 0 else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        found = sorted(name for name, types in node.get_topic_names_and_types() if AU_TYPE in types)
        if found:
            return found[0]
        executor.spin_once(timeout_sec=0.2)
    return None


def _check_args(args) -> None:
    from microexp.config import check_topic_name
    from microexp.errors import ParameterError

    if not args.timeout >= 0 or args.timeout == float("inf"):
        raise ParameterError(f"--timeout must be a number of seconds >= 0 (0 = never), got {args.timeout}")
    if args.count < 0:
        raise ParameterError(f"--count must be >= 0, got {args.count}")
    for opt, value in (("--topic", args.topic), ("--diagnostics", args.diagnostics)):
        if value is not None:
            check_topic_name(value, opt)


def _check_type(node, topic: str) -> None:
    """ParameterError when ``topic`` is known to carry another type than AUPrediction."""
    from microexp.errors import ParameterError

    types = dict(node.get_topic_names_and_types()).get(topic)
    if types and AU_TYPE not in types:
        raise ParameterError(f"--topic {topic}: carries {', '.join(types)}, not {AU_TYPE}")


def _subscribe(node, topic: str, diag_topic: Optional[str], state: WatchState) -> deque:
    """Best-effort subscriptions to the predictions (into the returned queue), the diagnostics and the AU
    events beside them."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import qos_profile_sensor_data

    from microexp_msgs.msg import AUEvent, AUPrediction

    received: deque = deque(maxlen=1000)
    node.create_subscription(AUPrediction, topic, lambda m: received.append(m), qos_profile_sensor_data)
    if diag_topic:
        node.create_subscription(DiagnosticArray, diag_topic, state.set_diagnostics, qos_profile_sensor_data)
    events_topic = events_topic_for(topic)
    if events_topic:
        node.create_subscription(AUEvent, events_topic, state.add_event, qos_profile_sensor_data)
    return received


def _show(received: deque, state: WatchState, topic: str, tty: bool, want: int, shown: int) -> int:
    """Take every message received; print each as a block (no terminal; stops at the ``want``-th), or redraw
    the terminal with the newest. Returns how many have been printed."""
    newest = None
    while received:
        newest = received.popleft()
        state.add(newest)  # every message counts in the statistics, shown or not
        if not tty:
            print(render(newest, topic, state) + "\n", flush=True)
            shown += 1
            if want and shown >= want:
                return shown
    if tty and newest is not None:  # a terminal shows only the newest window, redrawn in place
        sys.stdout.write("\x1b[H\x1b[2J" + render(newest, topic, state) + "\n")
        sys.stdout.flush()
    return shown


def run(args) -> int:
    import rclpy

    from microexp.ros.runner import Runner

    _check_args(args)
    want = 1 if args.once else max(0, args.count)
    tty = sys.stdout.isatty() and not args.plain and not want
    runner = Runner("single")
    node = runner.add(rclpy.create_node("microexp_watch"))
    executor = runner.executor
    state = WatchState()
    shown = 0
    started = time.monotonic()
    try:
        topic = args.topic or _discover(node, executor, args.timeout)
        if topic is None:
            print(f"watch: no {AU_TYPE} topic appeared within {args.timeout:g} s", file=sys.stderr)
            return 1
        diag_topic = args.diagnostics or diagnostics_topic_for(topic)
        executor.spin_once(timeout_sec=0.2)  # a topic of another type must be refused before subscribing to it
        _check_type(node, topic)
        received = _subscribe(node, topic, diag_topic, state)
        if not tty:
            print(f"watching {topic}" + (f" (diagnostics {diag_topic})" if diag_topic else ""), flush=True)
        next_type_check = 0.0
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            if not state.messages and time.monotonic() >= next_type_check:
                next_type_check = time.monotonic() + 0.5
                _check_type(node, topic)
            shown = _show(received, state, topic, tty, want, shown)
            if want and shown >= want:
                return 0
            if args.timeout > 0 and time.monotonic() - started > args.timeout:
                if want:
                    print(f"watch: {shown} of {want} predictions on {topic} within {args.timeout:g} s", file=sys.stderr)
                    return 1
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        runner.close()
    return 0
