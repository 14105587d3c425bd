"""Protocol node: runs the elicitation protocol (:mod:`microexp.protocol`) and drives the recorder through
its services. Headless (unattended sessions, tests) or with a terminal UI for the experimenter:
``space`` start, ``r`` redo, ``p`` pause/resume, ``n`` skip, ``q`` quit."""
from __future__ import annotations

import sys
import threading
import time

from microexp_msgs.srv import LabelSegment, RedoSegment, StartSegment, StopSegment
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from microexp.config import Param
from microexp.errors import MicroexpError
from microexp.protocol import Phase, ProtocolRunner, Timing, parse_aus
from microexp.ros.base import declare_params, run_node

PARAMS = (
    Param("aus", "all", "Action Units to run, in order ('all' = the 21 of Table 1, or e.g. 'AU2,AU12,AU45')"),
    Param("subject", "S00", "subject pseudonym passed to the recorder"),
    Param("lux", 0.0, "measured illuminance of the face, written to each segment", min=0.0, max=200000.0, unit="lx"),
    Param("takes", 1, "kept takes of each AU, performed in a row", min=1, max=100),
    Param("first_trial", 1, "trial number of each AU's first take (a later session of the same subject continues)",
          min=0, max=10000),
    Param("headless", False, "run unattended: no keys, start at once, exit when done"),
    Param("time_scale", 1.0, "multiply every phase duration (tests use < 1)", min=0.01, max=100.0),
    Param("demo_s", 4.0, "demonstration phase", min=0.0, max=600.0, unit="s"),
    Param("countdown_s", 3.0, "countdown before performing (the segment starts recording here)", min=0.0, max=60.0, unit="s"),
    Param("perform_s", 2.5, "performance window", min=0.1, max=60.0, unit="s"),
    Param("rest_s", 3.0, "rest after the double beep", min=0.0, max=600.0, unit="s"),
    Param("recorder", "/recorder", "name of the recorder node whose services are called"),
    Param("service_timeout_s", 10.0, "wait for the recorder's services at most this long", min=0.1, max=600.0, unit="s"),
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

    def wait(self) -> None:
        t = self.node.p["service_timeout_s"]
        for cli in (self.start_cli, self.stop_cli, self.redo_cli, self.label_cli):
            if not cli.wait_for_service(timeout_sec=t):
                raise MicroexpError(f"recorder service {cli.srv_name} did not appear within {t} s")

    def _call(self, cli, req):
        fut = cli.call_async(req)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(self.node.p["service_timeout_s"]):
            raise MicroexpError(f"recorder service {cli.srv_name} did not answer")
        res = fut.result()
        if not res.success:
            raise MicroexpError(f"recorder: {res.message}")
        return res

    def start_segment(self, au: str, trial: int) -> int:
        if self.node.before_segment is not None:
            self.node.before_segment(au, trial)
        req = StartSegment.Request(subject=self.node.p["subject"], au=au, trial=trial, lux=float(self.node.p["lux"]))
        return self._call(self.start_cli, req).segment_id

    def stop_segment(self, status: str) -> None:
        if status == "kept" and self.node.before_stop is not None:
            self.node.before_stop()
        self._call(self.stop_cli, StopSegment.Request(status=status))

    def mark_redone(self, segment_id: int) -> None:
        self._call(self.label_cli, LabelSegment.Request(segment_id=segment_id, lux=-1.0, status="redone"))


class ProtocolNode(Node):
    def __init__(self, name: str = "protocol", namespace: str = "", parameter_overrides=None, ui=None,
                 before_segment=None, before_stop=None):
        """``before_segment(au, trial)``, when given, is called before each take starts (the composed
        synthetic session uses it to wait until the simulated subject is ready); ``before_stop()`` before a
        take is closed as kept (there: until the subject finished performing)."""
        super().__init__(name, namespace=namespace, parameter_overrides=parameter_overrides or [])
        self.before_segment = before_segment
        self.before_stop = before_stop
        self.p = declare_params(self, PARAMS)
        timing = Timing(demo_s=self.p["demo_s"], countdown_s=self.p["countdown_s"], perform_s=self.p["perform_s"],
                        rest_s=self.p["rest_s"]).scaled(self.p["time_scale"])
        self.client = RecorderClient(self)
        self.ui = ui
        self.runner = ProtocolRunner(parse_aus(self.p["aus"]), self.client, timing, on_event=self._on_event,
                                     clock=time.monotonic, takes=self.p["takes"], first_trial=self.p["first_trial"])
        self.finished = threading.Event()
        self.error: str | None = None
        self.keys: list[str] = []
        self._thread = threading.Thread(target=self._run, name="protocol", daemon=True)
        self._thread.start()

    def _on_event(self, kind: str, info: dict) -> None:
        if kind == "phase":
            self.get_logger().info(f"{info['au']} trial {info['trial']}: {info['phase']}")
        if self.ui is not None:
            self.ui.show(kind, info, self.runner)

    def press(self, key: str) -> None:
        self.keys.append(key)

    def _run(self) -> None:
        try:
            self.client.wait()
            headless = self.p["headless"]
            if headless:
                self.runner.start(time.monotonic())
            while self.runner.phase != Phase.DONE:
                now = time.monotonic()
                while self.keys:
                    key = self.keys.pop(0)
                    if key == " " and self.runner.phase == Phase.IDLE:
                        self.runner.start(now)
                    elif key == "r":
                        self.runner.redo(now)
                    elif key == "p":
                        self.runner.pause(now)
                    elif key == "n":
                        self.runner.skip(now)
                    elif key == "q":
                        self.runner.quit(now)
                self.runner.tick(now)
                time.sleep(0.005)
        except MicroexpError as exc:
            self.error = str(exc)
            self.get_logger().error(f"protocol stopped: {exc}")
        finally:
            self.finished.set()


def main(args=None) -> int:
    from microexp.ros.protocol_ui import TerminalUI

    ui = TerminalUI() if sys.stdin.isatty() else None
    return run_node(lambda: _with_ui(ProtocolNode(ui=ui), ui), args)


def _with_ui(node: ProtocolNode, ui):
    if ui is not None:
        ui.attach(node)
    return node
