"""Counting what arrives over DDS, in a process of its own (used by `microexp play --count`, `microexp bench
load` and tests), so that it measures the publishers and not itself.

``python -m microexp.ros.counter [--topic T|package/msg/Type ...]`` subscribes to the given topics, or, without
``--topic``, to every topic that appears on the graph (except /rosout and /parameter_events), matching each
topic's publishers' reliability, with a deep reader history (KEEP_ALL when reliable, KEEP_LAST 10000 when
best effort). A reader thread takes the waiting messages of every subscription as serialized CDR bytes each
``poll_ms`` (no executor, no deserialization on the receive path) and counts messages, bytes and, for
EventPackets, ``seq`` gaps read straight from the CDR. A second thread decodes the event payloads behind
it (events, ON events, triggers, first/last event time); the decoder may lag, the intake never waits for it.

Protocol on stdin/stdout: prints ``ready`` once its graph node exists; then reads one JSON line from stdin,
``{"expected": {topic: published}}`` (or EOF: no expectation), waits until every expected topic has received
that many messages or nothing arrived for ``--quiet`` s (at most ``--timeout`` s), and prints one JSON line:
per topic ``type``, ``reliable`` (how it was counted), ``received``, ``bytes`` and for EventPackets ``seq_gaps``, ``seq_missing``, ``events``,
``on_events``, ``triggers``, ``t_first_us``, ``t_last_us``, ``encoding``.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time

from microexp.bags.cdr import EVENT_PACKET, event_packet_fields
from microexp.bags.events import StreamStats
from microexp.events.stream import Packet, SeqTracker, StreamReader

IMAGE = "sensor_msgs/msg/Image"
SKIP = ("/rosout", "/parameter_events")


class Counts:
    """Per-topic intake counts (taken on the reader thread) and decoded event statistics."""

    def __init__(self, msgtype: str, reliable: bool = True):
        self.type = msgtype
        self.reliable = reliable
        self.received = 0
        self.bytes = 0
        self.seq = SeqTracker()  # from the CDR bytes, on the intake
        self.stats = StreamStats()
        self.reader = StreamReader()  # decoding, on the decode thread
        self.decode_errors = 0

    def as_dict(self, decode: bool) -> dict:
        out = {"type": self.type, "reliable": self.reliable, "received": self.received, "bytes": self.bytes}
        if self.type == EVENT_PACKET:
            out.update(seq_gaps=self.seq.gaps, seq_missing=self.seq.missing, seq_restarts=self.seq.restarts)
            if decode:
                s = self.stats
                out.update(
                    events=s.events,
                    on_events=s.on_events,
                    triggers=s.triggers,
                    t_first_us=s.t_first_us,
                    t_last_us=s.t_last_us,
                    encoding=s.encoding,
                    decode_errors=self.decode_errors,
                )
        elif self.type == IMAGE:
            out["frames"] = self.received
        return out


class CounterProcess:
    """The counting subscriber (runs inside the counter process)."""

    def __init__(self, topics: dict[str, str] | None, decode: bool = True, poll_ms: float = 0.5):
        import rclpy

        from microexp.ros import lifecycle
        from microexp.ros.intake import Intake

        lifecycle.init()
        self.node = rclpy.create_node("microexp_counter", enable_rosout=False, start_parameter_services=False)
        self.fixed = dict(topics or {})
        self.decode = decode
        self.period = poll_ms / 1000.0
        self.counts: dict[str, Counts] = {}
        self.last_arrival = time.monotonic()
        self.first_arrival: float | None = None
        self._decode_q: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._next_discovery = 0.0
        self.intake = Intake(
            self.node, self._take, self.period, name="counter_intake", on_turn=self._discover_every_100ms
        )
        self.intake.start()
        self._decoder = threading.Thread(target=self._decode_loop, name="counter_decode", daemon=True)
        if decode:
            self._decoder.start()

    def _qos_for(self, topic: str):
        """Reliable (KEEP_ALL) when every publisher of ``topic`` is reliable, else best effort
        (:func:`~microexp.ros.intake.publishers_qos`); a mix is reported in one line on stderr, naming the
        best-effort publishers, since counts taken best effort may fall short."""
        from microexp.ros.intake import publishers_qos

        qos, mixed = publishers_qos(self.node, topic)
        if mixed:
            n = len(self.node.get_publishers_info_by_topic(topic))
            print(
                f"counter: {topic}: {n} publishers, best effort: {', '.join(mixed)}; "
                "counting best effort, so messages of the reliable ones may be lost too",
                file=sys.stderr,
                flush=True,
            )
        return qos

    def discover(self) -> None:
        from rclpy.qos import HistoryPolicy

        from microexp.ros.messages import msg_class

        if self.fixed:
            candidates = list(self.fixed.items())
        else:
            candidates = [
                (t, types[0]) for t, types in self.node.get_topic_names_and_types() if t not in SKIP and len(types) == 1
            ]
        for topic, msgtype in candidates:
            if topic in self.intake.subs:
                continue
            qos = self._qos_for(topic)
            if qos is None:
                continue
            try:
                cls = msg_class(msgtype)
            except ValueError:
                continue
            with self._lock:
                self.counts[topic] = Counts(msgtype, reliable=qos.history == HistoryPolicy.KEEP_ALL)
            self.intake.subscribe(topic, cls, qos)

    def _take(self, topic: str, raw: bytes, _info: dict) -> None:
        """One message taken by the intake: counted; an EventPacket's seq tracked and, with decode, queued."""
        c = self.counts[topic]
        with self._lock:
            c.received += 1
            c.bytes += len(raw)
            self.last_arrival = time.monotonic()
            if self.first_arrival is None:
                self.first_arrival = self.last_arrival
        if c.type == EVENT_PACKET:
            try:
                seq, _, _ = event_packet_fields(raw)
                c.seq.update(seq)
            except ValueError:
                c.decode_errors += 1
            if self.decode:
                self._pending += 1
                self._decode_q.put((topic, raw))

    def _discover_every_100ms(self) -> None:
        now = time.monotonic()
        if now >= self._next_discovery:
            self.discover()
            self._next_discovery = now + 0.1

    def _decode_loop(self) -> None:
        from rclpy.serialization import deserialize_message

        from event_camera_msgs.msg import EventPacket

        while True:
            item = self._decode_q.get()
            if item is None:
                return
            topic, raw = item
            c = self.counts[topic]
            try:
                msg = deserialize_message(raw, EventPacket)
                decoded = c.reader.feed(Packet.from_msg(msg))
                if decoded.error is not None:
                    c.decode_errors += 1
                    continue
                s = c.stats
                s.messages += 1
                s.width, s.height, s.encoding = int(msg.width), int(msg.height), str(msg.encoding)
                s.bytes += len(msg.events)
                s.add_events(decoded.events, decoded.triggers)
            except Exception:  # noqa: BLE001 - an undecodable payload is counted, not fatal
                c.decode_errors += 1
            finally:
                self._pending -= 1

    def settle(self, expected: dict | None, quiet_s: float, timeout_s: float) -> None:
        """Until every expected topic received its count, or nothing arrived for ``quiet_s``."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                done = bool(expected) and all(
                    t in self.counts and self.counts[t].received >= n for t, n in expected.items()
                )
                quiet = time.monotonic() - self.last_arrival > quiet_s
            if done or quiet:
                break
            time.sleep(0.02)
        self.intake.stop()
        if self.decode:
            self._decode_q.put(None)
            self._decoder.join(timeout=max(5.0, end - time.monotonic()))

    def summary(self) -> dict:
        with self._lock:
            return {t: c.as_dict(self.decode) for t, c in sorted(self.counts.items())}

    def close(self) -> None:

        from microexp.ros import lifecycle

        self.node.destroy_node()
        lifecycle.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m microexp.ros.counter")
    ap.add_argument("--topic", action="append", default=[], help="topic|package/msg/Type (default: every topic)")
    ap.add_argument("--quiet", type=float, default=2.0, help="stop after this long without a message")
    ap.add_argument("--timeout", type=float, default=120.0, help="stop waiting after this long")
    ap.add_argument("--no-decode", action="store_true", help="count messages and seq only")
    ap.add_argument("--poll-ms", type=float, default=0.5)
    args = ap.parse_args(argv)
    topics = {}
    for entry in args.topic:
        topic, _, msgtype = entry.partition("|")
        topics[topic] = msgtype
    counter = CounterProcess(topics or None, decode=not args.no_decode, poll_ms=args.poll_ms)
    try:
        print("ready", flush=True)
        line = sys.stdin.readline()
        expected = (json.loads(line) if line.strip() else {}).get("expected") or {}
        counter.settle(expected, args.quiet, args.timeout)
        print(json.dumps(counter.summary()), flush=True)
    finally:
        counter.close()
    return 0


class CounterClient:
    """The parent's side: starts the counter process and waits for ``ready``; ``finish(expected)`` hands
    it the published counts and returns its summary."""

    def __init__(
        self,
        topics: list[str] | None = None,
        quiet_s: float = 2.0,
        timeout_s: float = 120.0,
        decode: bool = True,
        env: dict | None = None,
    ):
        cmd = [sys.executable, "-m", "microexp.ros.counter", "--quiet", str(quiet_s), "--timeout", str(timeout_s)]
        for t in topics or []:
            cmd += ["--topic", t]
        if not decode:
            cmd.append("--no-decode")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"the counting subscriber did not start (it said {line!r})")
        self.timeout_s = timeout_s

    def finish(self, expected: dict | None = None) -> dict:
        out, _ = self.proc.communicate(json.dumps({"expected": expected or {}}) + "\n", timeout=self.timeout_s + 60)
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"the counting subscriber printed no result (exit {self.proc.returncode})")
        return json.loads(lines[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def with_loss(received: dict, published: dict) -> dict:
    """Per topic ``published``, ``received`` and ``lost = published - received`` (topics the graph published,
    and every topic that arrived; ``published`` is null where the publisher did not say)."""
    out = {}
    for topic in sorted(set(received) | set(published)):
        entry = dict(received.get(topic, {"received": 0}))
        pub = published.get(topic)
        entry["published"] = pub
        entry["lost"] = (pub - entry["received"]) if pub is not None else None
        entry["messages"] = entry["received"]  # the same count under its other name, for readers that use it
        out[topic] = entry
    return out


if __name__ == "__main__":
    sys.exit(main())
