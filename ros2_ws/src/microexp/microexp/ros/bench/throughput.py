"""The ROS halves of `microexp bench playback | recording | replay` (see :mod:`microexp.bench.io`).

A counting subscriber runs in a process of its own (``python -m microexp.ros.bench.throughput count ...``),
as a real consumer would: it takes serialized messages (no deserialization) the way the recorder does (a
poll loop over the subscriptions, ``--intake executor`` for callbacks), counts messages and bytes per topic,
records arrival times (the DDS reception time of each message), and prints one JSON line when the stream has
been quiet for ``--quiet`` s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def count_main(argv: list[str]) -> int:
    import rclpy

    from microexp.bags.cdr import EVENT_PACKET, SeqTracker, event_packet_fields
    from microexp.ros import lifecycle
    from microexp.ros.intake import Intake
    from microexp.ros.messages import msg_class
    from microexp.ros.qos import LOSSLESS_QOS as RELIABLE_QOS

    ap = argparse.ArgumentParser()
    ap.add_argument("--topic", action="append", required=True, help="topic|package/msg/Type")
    ap.add_argument("--quiet", type=float, default=3.0)
    ap.add_argument("--first-timeout", type=float, default=120.0)
    ap.add_argument(
        "--intake",
        choices=("poll", "executor"),
        default="poll",
        help="poll: take every waiting message each 0.5 ms (as the recorder does); executor: callbacks",
    )
    args = ap.parse_args(argv)
    lifecycle.init()
    node = rclpy.create_node("bench_counter")
    counts, sizes, arrivals, spans = {}, {}, [], {}
    seqs: dict[str, SeqTracker] = {}

    def take(topic, raw, info):
        # arrival = when DDS received the message (system clock), not when this loop got to it
        received = int(info.get("received_timestamp", 0)) if info else 0
        arrivals.append(received * 1e-9 if received > 0 else time.time())
        span = spans.setdefault(topic, [arrivals[-1], arrivals[-1]])
        span[1] = arrivals[-1]
        counts[topic] = counts.get(topic, 0) + 1
        sizes[topic] = sizes.get(topic, 0) + len(raw)
        tracker = seqs.get(topic)
        if tracker is not None:
            try:
                tracker.update(event_packet_fields(raw)[0])
            except ValueError:
                tracker.gaps += 1  # not an EventPacket: counted as a gap, so that it shows

    intake = Intake(node, take, raw=True)
    for entry in args.topic:
        topic, _, msgtype = entry.partition("|")
        if msgtype == EVENT_PACKET:
            seqs[topic] = SeqTracker()
        if args.intake == "executor":
            node.create_subscription(
                msg_class(msgtype), topic, lambda raw, info, t=topic: take(t, raw, info), RELIABLE_QOS, raw=True
            )
        else:
            intake.subscribe(topic, msgtype, RELIABLE_QOS)
    print("ready", flush=True)
    start = last = time.monotonic()
    while True:
        n = len(arrivals)
        if args.intake == "executor":
            rclpy.spin_once(node, timeout_sec=0.02)
        else:
            intake.take_waiting()
            time.sleep(0.0005)
        now = time.monotonic()
        if len(arrivals) != n:
            last = now
        if (arrivals and now - last > args.quiet) or (not arrivals and now - start > args.first_timeout):
            break
    node.destroy_node()
    lifecycle.shutdown()
    seq = {t: {**s.as_dict(), "first": s.first, "last": s.last} for t, s in seqs.items()}
    out = {"counts": counts, "bytes": sizes, "seq": seq, "spans": spans, "arrivals": arrivals}
    print(json.dumps(out), flush=True)
    return 0


def start_counter(topics: list[str], quiet: float = 3.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "microexp.ros.bench.throughput", "count", "--quiet", str(quiet)]
    for t in topics:
        cmd += ["--topic", t]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"bench counter did not start: {line!r}")
    return proc


def finish_counter(proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    out = proc.communicate(timeout=timeout)[0]
    return json.loads(out.strip().splitlines()[-1])


def play_file(node_factory, topics: list[str], timeout: float = 600.0) -> dict:
    """Run a file-playback node flat out against a counter process: ``wall_s`` from the first message published
    until the node finished (its subscribers acknowledged everything), ``start_epoch_s`` (system clock at the
    first message), the counter's counts, seq gaps and per topic first and last arrival (``spans``)."""
    from microexp.ros.runner import Runner

    counter = start_counter(topics)
    graph = Runner(threads=2)
    try:
        node = graph.add(node_factory())
        graph.start()
        t0 = t0_epoch = None
        end = time.monotonic() + timeout
        while not node.finished.is_set() and time.monotonic() < end:
            if t0 is None and getattr(node, "seq", 0) > 0:
                t0, t0_epoch = time.perf_counter(), time.time()
            time.sleep(0.0005)
        wall = time.perf_counter() - (t0 or time.perf_counter())
        published = dict(node.published)
    finally:
        graph.close()
    got = finish_counter(counter)
    return {
        "wall_s": wall,
        "start_epoch_s": t0_epoch,
        "spans": got.get("spans", {}),
        "published": published,
        "received": got["counts"],
        "bytes": got["bytes"],
        "seq": got.get("seq", {}),
        "arrivals": got["arrivals"],
    }


def record_flat_out(out_dir: str, packets: int, packet_bytes: int, storage: str = "mcap") -> dict:
    """A publisher process sends ``packets`` EVK4-like EventPackets flat out; the recorder (this process)
    writes them; MB/s from the first to the last message written, drops counted."""
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.recorder_node import RecorderNode
    from microexp.ros.runner import Runner

    graph = Runner(threads=2)
    try:
        rec = graph.add(
            RecorderNode(
                parameter_overrides=overrides(
                    "recorder",
                    None,
                    out=out_dir,
                    subject="B01",
                    storage=storage,
                    queue_mb=2048,
                    topics=["/evk4/events|event_camera_msgs/msg/EventPacket"],
                )
            )
        )
        graph.start()
        rec.start_segment("B01", "AU12", 1, 0.0)
        pub = subprocess.Popen(
            [sys.executable, "-m", "microexp.ros.bench.throughput", "publish", str(packets), str(packet_bytes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while not rec._subs:
            rec.discover()
            time.sleep(0.01)
        pub.stdout.readline()  # "ready"
        t0 = time.perf_counter()
        c = rec.writer.counters["/evk4/events"]
        last, n = time.monotonic(), -1
        while c.received < packets and time.monotonic() - last < 5.0:  # all taken, or nothing more for 5 s
            if c.received != n:
                n, last = c.received, time.monotonic()
            time.sleep(0.005)
        wall = time.perf_counter() - t0 - (0.0 if c.received >= packets else 5.0)
        rec.writer.flush()
        wall_written = time.perf_counter() - t0
        pub.wait(timeout=60)
        summary = rec.finish()
    finally:
        graph.close()
    return {
        "wall_s": wall,
        "wall_written_s": wall_written,
        "published": packets,
        "received": c.received,
        "written": c.written,
        "dropped": c.dropped,
        "bytes": c.bytes,
        "errors": summary["errors"],
    }


def make_replay_bag(path: str, seconds: float) -> tuple[dict, list[int]]:
    """A bag of 1 ms EventPackets (20 kB) and 40 Hz APS-sized images; returns (topics, receive stamps ns)."""
    from pathlib import Path

    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from event_camera_msgs.msg import EventPacket
    from microexp.bags.writer import SegmentWriter

    topics = {"/evk4/events": "event_camera_msgs/msg/EventPacket", "/davis346/image_raw": "sensor_msgs/msg/Image"}
    w = SegmentWriter(Path(path).parent, topics)
    w.open_segment(Path(path).name)
    ev = EventPacket()
    ev.encoding, ev.events = "evt3", bytes(20_000)
    img = Image()
    img.height, img.width, img.encoding, img.step, img.data = 260, 346, "mono8", 346, bytes(346 * 260)
    raw_ev, raw_img = serialize_message(ev), serialize_message(img)
    t0, stamps = 1_000_000_000, []
    for k in range(int(seconds * 1000)):
        stamps.append(t0 + k * 1_000_000)
        w.put("/evk4/events", stamps[-1], raw_ev)
        if k % 25 == 0:
            stamps.append(stamps[-1] + 1)
            w.put("/davis346/image_raw", stamps[-1], raw_img)
    w.close_segment()
    w.stop()
    return topics, stamps


def publish_main(argv: list[str]) -> int:
    import numpy as np
    import rclpy

    from event_camera_msgs.msg import EventPacket
    from microexp.ros import lifecycle
    from microexp.ros.messages import event_packet
    from microexp.ros.qos import LOSSLESS_QOS as RELIABLE_QOS

    packets, size = int(argv[0]), int(argv[1])
    lifecycle.init()
    node = rclpy.create_node("bench_publisher")
    pub = node.create_publisher(EventPacket, "/evk4/events", RELIABLE_QOS)
    while pub.get_subscription_count() == 0:
        time.sleep(0.01)
    time.sleep(0.5)
    payload = np.random.default_rng(0).integers(0, 2**16, size // 2, dtype=np.uint16).tobytes()
    print("ready", flush=True)
    msg = event_packet(0, "", 1280, 720, 0, payload)  # one message, its seq set per send
    for i in range(packets):
        msg.seq = i
        pub.publish(msg)
    # a reliable writer still holds what the recorder has not acknowledged: exiting now would lose it
    from microexp.ros.publishing import wait_acked

    wait_acked([pub], 120.0)
    node.destroy_node()
    lifecycle.shutdown()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "count":
        sys.exit(count_main(sys.argv[2:]))
    if sys.argv[1] == "publish":
        sys.exit(publish_main(sys.argv[2:]))
    raise SystemExit(f"unknown mode {sys.argv[1]!r}")
