"""The ROS half of `microexp bench load` (described in :mod:`microexp.bench.load`): the recording graph as
separate processes, started the way ``record.launch.py`` starts them (node executables with ``--ros-args``,
the package's parameter files, then overrides), a control node in this process that opens and closes the
segment through the recorder's services, and a 5 Mev/s EVK4 blob publisher
(``python -m microexp.ros.bench.load publish ...``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ENDED = re.compile(r"playback ended; published (\{.*\})")


def executable(name: str) -> str:
    """A node executable of this install (the venv's console scripts, else PATH)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"node executable {name} not found (run `make setup`)")
    return found


def config_file(node_file: str) -> str:
    return str(Path(__file__).resolve().parents[3] / "config" / node_file)


class Proc:
    """A node process; its stderr is read on a thread (rclpy logs there), looking for the end line."""

    def __init__(self, name: str, cmd: list[str], env: dict):
        self.name = name
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.published: dict | None = None
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            m = ENDED.search(line)
            if m:
                self.published = json.loads(m.group(1))
                self.ended.set()
        self.ended.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2.0)

    def tail(self, n: int = 8) -> str:
        return "\n".join(self.lines[-n:])


def node_cmd(exe: str, name: str, params: dict) -> list[str]:
    cmd = [executable(exe), "--ros-args", "-r", f"__node:={name}", "--params-file", config_file(f"{exe}.yaml")]
    for k, v in params.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        cmd += ["-p", f"{k}:={v}"]
    return cmd


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes at normal priority that each keep a core busy."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True:\n    pass"], stdin=subprocess.DEVNULL) for _ in range(n)
    ]


def call(node, client, request, timeout: float = 30.0):
    import rclpy

    if not client.wait_for_service(timeout_sec=timeout):
        raise RuntimeError(f"service {client.srv_name} did not appear within {timeout:.0f} s")
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise RuntimeError(f"service {client.srv_name} did not answer within {timeout:.0f} s")
    return future.result()


def run_scenario(
    session: Path,
    sensors: list[tuple[str, list[str]]],
    env: dict,
    busy: int,
    timeout_s: float = 300.0,
    tail_quiet_s: float = 1.0,
) -> dict:
    """One recording segment: ``busy`` busy processes, a recorder process writing into ``session``, and the
    sensor processes ``sensors`` ((name, command)); returns per topic published / received / recorded /
    lost, the recorder's MB/s, and the load."""
    import rclpy

    from microexp.ros import lifecycle
    from microexp_msgs.srv import StartSegment, StopSegment

    hogs = busy_processes(busy)
    procs: list[Proc] = []
    load_start = os.getloadavg()[0]
    lifecycle.init()
    ctl = rclpy.create_node("load_bench_control")
    try:
        recorder = Proc(
            "recorder",
            node_cmd(
                "recorder_node",
                "recorder",
                {
                    "out": str(session),
                    "subject": "B01",
                    "storage": "mcap",
                    "source": "bench",
                    "tail_quiet_s": tail_quiet_s,
                    "tail_max_s": 60.0,
                },
            ),
            env,
        )
        procs.append(recorder)
        start = ctl.create_client(StartSegment, "/recorder/start_segment")
        stop = ctl.create_client(StopSegment, "/recorder/stop_segment")
        req = StartSegment.Request()
        req.subject, req.au, req.trial, req.lux = "B01", "AU12", 1, 0.0
        res = call(ctl, start, req, timeout=60.0)
        if not res.success:
            raise RuntimeError(f"start_segment failed: {res.message}")
        t0 = time.monotonic()
        senders = [Proc(name, cmd, env) for name, cmd in sensors]
        procs += senders
        end = time.monotonic() + timeout_s
        for p in senders:
            if not p.ended.wait(max(0.0, end - time.monotonic())) or p.published is None:
                raise RuntimeError(f"{p.name} did not finish (exit {p.proc.poll()}):\n{p.tail()}")
        play_s = time.monotonic() - t0
        time.sleep(1.0)  # the last messages cross DDS; the recorder's tail handling takes the rest
        load_end = os.getloadavg()[0]
        res = call(ctl, stop, StopSegment.Request(), timeout=120.0)
        if not res.success:
            raise RuntimeError(f"stop_segment failed: {res.message}\n{recorder.tail()}")
        manifest = json.loads((session / "manifest.json").read_text())
    finally:
        for p in reversed(procs):
            p.stop()
        for h in hogs:
            h.kill()
            h.wait()
        ctl.destroy_node()
        lifecycle.shutdown()
    seg = manifest["segments"][0]
    published = {}
    for p in senders:
        published.update(p.published or {})
    loss = seg.get("loss", {})
    streams = {}
    written_bytes = 0
    for topic in sorted(set(published) | set(loss)):
        lo = loss.get(topic, {})
        pub = published.get(topic)
        recorded = seg.get("messages", {}).get(topic, 0)
        written_bytes += lo.get("bytes", 0)
        streams[topic] = {
            "published": pub,
            "received": lo.get("received", 0),
            "recorded": recorded,
            "lost": (pub - recorded) if pub is not None else None,
            "seq_missing": lo.get("seq_missing", 0),
            "queue_dropped": lo.get("dropped", 0),
            "mb": round(lo.get("bytes", 0) / 1e6, 2),
        }
    duration = _bag_duration(session / seg["name"], published)
    for topic, st in streams.items():  # achieved rate: what the sensor process managed on this machine
        st["msgs_per_s"] = round(st["recorded"] / duration, 1) if duration and topic in published else None
    return {
        "streams": streams,
        "recorder_mb_s": round(written_bytes / duration / 1e6, 2) if duration else None,
        "recorded_mb": round(written_bytes / 1e6, 2),
        "bag_span_s": round(duration, 3) if duration else None,
        "play_wall_s": round(play_s, 2),
        "loadavg_1min_start": round(load_start, 2),
        "loadavg_1min_end": round(load_end, 2),
        "foreign_publishers": len(seg.get("foreign_publishers", [])),
        "status": seg["status"],
    }


def _bag_duration(path: Path, topics) -> float | None:
    """Span of the receive times (s) of ``topics`` in the bag (the sensor streams: not the segment marker,
    which is written when the segment opens, before the sensor processes have started)."""
    from microexp.bags.reader import Bag

    try:
        with Bag(path) as bag:
            times = [t for _, _, t, _ in bag.messages(list(topics))]
    except Exception:  # noqa: BLE001 - an unreadable bag has no span; its counts still stand
        return None
    return (max(times) - min(times)) / 1e9 if len(times) > 1 else None


def publish_main(argv: list[str]) -> int:
    """``publish --rate-mev R --seconds S``: EVK4 1280x720 blob EventPackets of 1 ms (EVT3), encoded first,
    then sent in real time on /evk4/events (reliable, the events history depth) once a subscriber matched;
    logs the end line the other sensor nodes log."""
    import argparse

    import rclpy

    from event_camera_msgs.msg import EventPacket
    from microexp.events.codecs import make_encoder
    from microexp.ros import lifecycle
    from microexp.ros.dds import use_profile
    from microexp.ros.messages import event_packet
    from microexp.ros.qos import qos_named
    from microexp.synth.streams import PACKET_US, blob_packets

    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-mev", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--topic", default="/evk4/events")
    args = ap.parse_args(argv)
    enc = make_encoder("evt3", 1280, 720)
    payloads = [enc.encode(p)[0] for p in blob_packets(1280, 720, args.rate_mev, args.seconds, 1_000_000, seed=3)]
    use_profile()
    lifecycle.init()
    node = rclpy.create_node("evk4")
    pub = node.create_publisher(EventPacket, args.topic, qos_named("reliable", "events"))
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    msg = event_packet(0, "evk4", 1280, 720, 0, b"")  # one message, its stamp, seq and payload set per send
    start = time.monotonic()
    for i, payload in enumerate(payloads):
        delay = start + i * PACKET_US / 1e6 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.seq = i
        msg.events = payload
        pub.publish(msg)
    from microexp.ros.publishing import wait_acked

    wait_acked([pub], 60.0)
    node.get_logger().info("playback ended; published " + json.dumps({pub.topic_name: len(payloads)}))
    try:
        while True:  # keep the writer alive: it still holds what the recorder has not acknowledged
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    node.destroy_node()
    lifecycle.shutdown()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        sys.exit(publish_main(sys.argv[2:]))
    raise SystemExit("usage: python -m microexp.ros.bench.load publish [--rate-mev R] [--seconds S]")
