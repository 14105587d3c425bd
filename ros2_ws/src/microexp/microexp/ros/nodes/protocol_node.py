"""Protocol node: runs the elicitation protocol (:mod:`microexp.protocol`) and drives the recorder through
its services. With a terminal (stdin) it shows the terminal UI and takes the experimenter's keys: ``space``
start, ``r`` redo, ``p`` pause/resume, ``n`` skip, ``q`` quit. Headless (``headless``), or without a terminal
(as under ``ros2 launch`` without one: it logs so), it runs unattended: it starts at once.

Before it starts it waits for the nodes of ``wait_for`` to answer ready (``~/take_status``; e.g. the inference
node of the demo). With ``subject_node`` (a simulated subject such as ``/synthetic``) it waits before each take
until that node has the take's clip ready, and before keeping a take until the node has performed it and the
recorder has received every message it published, so that clips lie inside their segments. When the protocol
is done it ends the recorder's session (``end_session``: summary.json, manifest finished) and the executable
exits (0, or 1 after an error), which ends ``ros2 launch microexp record.launch.py``. ``~/phase``
(std_msgs/String, latched) names the protocol's phase at each change (idle, demo, countdown, perform, beep, rest,
paused, done), for displays such as the monitor page."""

from __future__ import annotations

import sys
import threading
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from std_msgs.msg import String

from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.protocol import Phase, ProtocolRunner, Timing, parse_aus
from microexp.ros.main import run_node
from microexp.ros.node import MicroexpNode, declare_params
from microexp.ros.qos import LATCHED_QOS
from microexp_msgs.srv import EndSession, LabelSegment, RedoSegment, StartSegment, StopSegment, TakeStatus

PARAMS = (
    Param("aus", "all", "Action Units to run, in order ('all' = the 21 of Table 1, or e.g. 'AU2,AU12,AU45')"),
    Param("subject", "S00", "subject pseudonym passed to the recorder"),
    Param("lux", 0.0, "measured illuminance of the face, written to each segment", min=0.0, max=200000.0, unit="lx"),
    Param("takes", 1, "kept takes of each AU, performed in a row", min=1, max=100),
    Param(
        "first_trial",
        1,
        "trial number of each AU's first take (a later session of the same subject continues)",
        min=0,
        max=10000,
    ),
    Param("headless", False, "run unattended: no keys, start at once, exit when done"),
    Param("time_scale", 1.0, "multiply every phase duration (tests use < 1)", min=0.01, max=100.0),
    Param("demo_s", 4.0, "demonstration phase", min=0.0, max=600.0, unit="s"),
    Param(
        "countdown_s",
        3.0,
        "countdown before performing (the segment starts recording here)",
        min=0.0,
        max=60.0,
        unit="s",
    ),
    Param("perform_s", 2.5, "performance window", min=0.1, max=60.0, unit="s"),
    Param("rest_s", 3.0, "rest after the double beep", min=0.0, max=600.0, unit="s"),
    Param("recorder", "/recorder", "name of the recorder node whose services are called"),
    Param(
        "service_timeout_s", 10.0, "wait for the recorder's services at most this long", min=0.1, max=600.0, unit="s"
    ),
    Param(
        "subject_node",
        "",
        "node simulating the subject (e.g. /synthetic): each take waits until its clip is "
        "ready, and is kept once the clip was published and the recorder received it all "
        "(empty = a real subject)",
    ),
    Param(
        "wait_for",
        [""],
        "nodes whose ~/take_status must answer ready before the protocol starts "
        "(e.g. /inference; empty entries are ignored)",
    ),
    Param(
        "take_timeout_s",
        120.0,
        "wait for subject_node or wait_for at most this long per take",
        min=0.1,
        max=3600.0,
        unit="s",
    ),
    Param(
        "end_session",
        True,
        "when the protocol is done, end the recorder's session (summary.json, manifest finished) and exit",
    ),
)


class RecorderClient:
    """The recorder interface of ProtocolRunner over the recorder's services."""

    def __init__(self, node: "ProtocolNode"):
        self.node = node
        group = ReentrantCallbackGroup()
        base = node.p["recorder"].rstrip("/")
        self.start_cli = node.create_client(StartSegment, f"{base}/start_segment", callback_group=group)
        self.stop_cli = node.create_client(StopSegment, f"{base}/stop_segment", callback_group=group)
        self.redo_cli = node.create_client(RedoSegment, f"{base}/redo_segment", callback_group=group)
        self.label_cli = node.create_client(LabelSegment, f"{base}/label_segment", callback_group=group)
        self.end_cli = node.create_client(EndSession, f"{base}/end_session", callback_group=group)
        self.status_cli = node.create_client(TakeStatus, f"{base}/take_status", callback_group=group)
        subject = node.p["subject_node"].rstrip("/")
        self.subject_cli = (
            node.create_client(TakeStatus, f"{subject}/take_status", callback_group=group) if subject else None
        )
        self.ready_clis = [
            node.create_client(TakeStatus, f"{n.rstrip('/')}/take_status", callback_group=group)
            for n in node.p["wait_for"]
            if n.strip()
        ]

    def wait(self) -> None:
        t = self.node.p["service_timeout_s"]
        clis = [self.start_cli, self.stop_cli, self.redo_cli, self.label_cli]
        if self.subject_cli is not None:
            clis.append(self.subject_cli)
        for cli in clis:
            if not cli.wait_for_service(timeout_sec=t):
                raise MicroexpError(f"service {cli.srv_name} did not appear within {t} s")
        for cli in self.ready_clis:  # e.g. a model that loads: up to take_timeout_s
            self.node.get_logger().info(f"waiting for {cli.srv_name} to report ready")
            self._wait(cli, TakeStatus.Request(), lambda r: r.ready, "to report ready")

    def _call(self, cli, req, check: bool = True):
        fut = cli.call_async(req)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(self.node.p["service_timeout_s"]):
            raise MicroexpError(f"service {cli.srv_name} did not answer within {self.node.p['service_timeout_s']} s")
        res = fut.result()
        if check and hasattr(res, "success") and not res.success:
            raise MicroexpError(f"recorder: {res.message}")
        return res

    def _wait(self, cli, req, done, what: str):
        """Ask ``cli`` (TakeStatus) every 50 ms until ``done(response)``; MicroexpError after take_timeout_s."""
        limit = self.node.p["take_timeout_s"]
        end = time.monotonic() + limit
        if not cli.wait_for_service(timeout_sec=limit):
            raise MicroexpError(f"service {cli.srv_name} did not appear within {limit} s")
        while True:
            res = self._call(cli, req, check=False)
            if done(res):
                return res
            if time.monotonic() > end:
                raise MicroexpError(f"{cli.srv_name} did not report {what} within {limit} s ({res.message})")
            time.sleep(0.05)

    def subject_ready(self, au: str, trial: int) -> None:
        """The simulated subject has the clip of (au, trial) ready (the experimenter waits for the subject)."""
        self._wait(
            self.subject_cli,
            TakeStatus.Request(au=au, trial=int(trial)),
            lambda r: r.ready,
            f"{au} trial {trial} ready",
        )

    def subject_done(self) -> None:
        """The simulated subject performed everything asked, and the recorder has received all of it."""
        res = self._wait(self.subject_cli, TakeStatus.Request(), lambda r: r.idle, "idle")
        published = dict(zip(res.topics, res.counts))

        def received_all(r) -> bool:
            got = dict(zip(r.topics, r.counts))
            return all(got[t] >= n for t, n in published.items() if t in got)

        try:
            self._wait(self.status_cli, TakeStatus.Request(), received_all, "every published message received")
        except MicroexpError as exc:  # the segment still holds what arrived: say so, keep going
            self.node.get_logger().warning(str(exc))

    def end_session(self, reason: str) -> str:
        res = self._call(self.end_cli, EndSession.Request(reason=reason))
        return res.summary_path

    def start_segment(self, au: str, trial: int) -> int:
        if self.node.before_segment is not None:
            self.node.before_segment(au, trial)
        elif self.subject_cli is not None:
            self.subject_ready(au, trial)
        req = StartSegment.Request(subject=self.node.p["subject"], au=au, trial=trial, lux=float(self.node.p["lux"]))
        return self._call(self.start_cli, req).segment_id

    def stop_segment(self, status: str) -> None:
        if status == "kept" and self.node.before_stop is not None:
            self.node.before_stop()
        elif status == "kept" and self.subject_cli is not None:
            self.subject_done()
        self._call(self.stop_cli, StopSegment.Request(status=status))

    def mark_redone(self, segment_id: int) -> None:
        self._call(self.label_cli, LabelSegment.Request(segment_id=segment_id, lux=-1.0, status="redone"))


class ProtocolNode(MicroexpNode):
    def __init__(
        self,
        name: str = "protocol",
        namespace: str = "",
        parameter_overrides=None,
        ui=None,
        before_segment=None,
        before_stop=None,
    ):
        """``before_segment(au, trial)``, when given, is called before each take starts instead of asking
        ``subject_node``; ``before_stop()`` before a take is closed as kept (tests use them)."""
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.before_segment = before_segment
        self.before_stop = before_stop
        self.p = declare_params(self, PARAMS)
        timing = Timing(
            demo_s=self.p["demo_s"],
            countdown_s=self.p["countdown_s"],
            perform_s=self.p["perform_s"],
            rest_s=self.p["rest_s"],
        ).scaled(self.p["time_scale"])
        self.client = RecorderClient(self)
        self.phase_pub = self.create_publisher(String, "~/phase", LATCHED_QOS)
        self.ui = ui
        self.runner = ProtocolRunner(
            parse_aus(self.p["aus"]),
            self.client,
            timing,
            on_event=self._on_event,
            clock=time.monotonic,
            takes=self.p["takes"],
            first_trial=self.p["first_trial"],
        )
        self.finished = threading.Event()
        self.error: str | None = None
        self.summary_path = ""
        self.keys: list[str] = []
        self._thread = self.spawn(self._run, "protocol")

    def _on_event(self, kind: str, info: dict) -> None:
        if kind == "phase":
            self.phase_pub.publish(String(data=str(info["phase"])))
        if kind == "phase" and info.get("au"):
            self.get_logger().info(f"{info['au']} trial {info['trial']}: {info['phase']}")
        elif kind == "phase":
            self.get_logger().info(f"protocol {info['phase']}")
        if self.ui is not None:
            self.ui.show(kind, info, self.runner)

    def press(self, key: str) -> None:
        self.keys.append(key)

    def _handle_keys(self, now: float) -> None:
        """The experimenter's keys pressed since the last turn: space starts, r redoes, p pauses, n skips, q quits."""
        actions = {"r": self.runner.redo, "p": self.runner.pause, "n": self.runner.skip, "q": self.runner.quit}
        while self.keys:
            key = self.keys.pop(0)
            if key == " " and self.runner.phase == Phase.IDLE:
                self.runner.start(now)
            elif key in actions:
                actions[key](now)

    def _run(self) -> None:
        try:
            headless = self.p["headless"] or self.ui is None
            if not self.p["headless"] and self.ui is None:
                self.get_logger().info("no terminal on stdin: running the protocol unattended (headless)")
            self.client.wait()
            if headless:
                self.runner.start(time.monotonic())
            while self.runner.phase != Phase.DONE and not self.stopping.is_set():
                now = time.monotonic()
                self._handle_keys(now)
                self.runner.tick(now)
                time.sleep(0.005)
        except Exception as exc:  # noqa: BLE001 - end, one line (a call cut short by the node's stop is no error)
            if not self.stopping.is_set():
                self.error = str(exc) if isinstance(exc, MicroexpError) else f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"protocol stopped: {self.error}")
        try:
            if self.p["end_session"] and not self.stopping.is_set():
                reason = f"protocol stopped: {self.error}" if self.error else "protocol finished"
                self.summary_path = self.client.end_session(reason)
                self.get_logger().info(f"session ended ({reason}): {self.summary_path}")
        except Exception as exc:  # noqa: BLE001
            self.error = self.error or f"ending the session failed: {exc}"
            self.get_logger().error(f"ending the session failed: {exc}")
        finally:
            self.finished.set()


def main(args=None) -> int:
    from microexp.ros.protocol_ui import TerminalUI

    ui = TerminalUI() if sys.stdin.isatty() else None
    return run_node(
        lambda: _with_ui(ProtocolNode(ui=ui), ui),
        args,
        done=lambda node: node.finished.is_set(),
        exit_code=lambda node: 1 if node.error else 0,
    )


def _with_ui(node: ProtocolNode, ui):
    if ui is not None:
        if node.p["headless"]:
            node.ui = None
        else:
            ui.attach(node)
    return node
