"""The ROS half of `microexp bench latency` (the benchmark itself, with its description, is
:mod:`microexp.bench.latency`): the publisher process and the measured inference node.

Publisher: ``python -m microexp.ros.bench.latency CONFIG_JSON``. Encodes the whole stream first (EVT3, packets
of 1 ms from :func:`microexp.synth.streams.blob_packets`), waits for the measured node's subscription, sends the warm-up
part paced in real time, pauses 0.5 s (a stream gap), prints ``measure``, pauses 0.5 s more (the benchmark
clears the node's statistics meanwhile), sends the measured part, and saves per packet (first event t, last
event t, CLOCK_MONOTONIC ns just before ``publish()``) to ``out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

PAUSE_S = 0.5


def publish_main(cfg: dict) -> int:
    import rclpy

    from event_camera_msgs.msg import EventPacket
    from microexp.events.codecs import make_encoder
    from microexp.ros import lifecycle
    from microexp.ros.messages import event_packet
    from microexp.ros.qos import qos_named
    from microexp.synth.streams import PACKET_US, blob_packets, rig_packets

    if cfg.get("cpus"):
        os.sched_setaffinity(0, set(cfg["cpus"]))
    w, h, rate = cfg["width"], cfg["height"], cfg["rate"]
    enc = make_encoder("evt3", w, h)
    measured_t0 = 1_000_000 + int(cfg["warmup"] * 1e6) + int(2 * PAUSE_S * 1e6)
    payloads, bounds, n_warm = [], [], 0
    for seconds, t0, seed in ((cfg["warmup"], 1_000_000, 1), (cfg["seconds"], measured_t0, 2)):
        packets = (
            rig_packets(cfg["sensor"], seconds, t0, seed)
            if rate == "rig"
            else blob_packets(w, h, rate, seconds, t0, seed)
        )
        for packet in packets:
            payloads.append(enc.encode(packet)[0])
            bounds.append((int(packet["t"][0]), int(packet["t"][-1])))
        n_warm = n_warm or len(payloads)
    lifecycle.init()
    node = rclpy.create_node("latency_bench_publisher")
    pub = node.create_publisher(EventPacket, cfg["topic"], qos_named(cfg["qos"]))
    deadline = time.monotonic() + 30

    def measured_node_subscribed() -> bool:  # the measured node's, not any other subscriber's (a monitor's)
        infos = node.get_subscriptions_info_by_topic(cfg["topic"])
        return any(i.node_name == cfg.get("node", "latency_bench_inference") for i in infos)

    while not measured_node_subscribed() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    sent = np.zeros(len(payloads), dtype=np.int64)
    msg = event_packet(0, cfg["sensor"], w, h, 0, b"")  # one message, its stamp, seq and payload set per send
    for phase, idx in (("warmup", range(0, n_warm)), ("measured", range(n_warm, len(payloads)))):
        start = time.monotonic()
        for j, i in enumerate(idx):
            delay = start + j * PACKET_US / 1e6 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
            msg.seq = i
            msg.events = payloads[i]
            sent[i] = time.monotonic_ns()
            pub.publish(msg)
        if phase == "warmup":
            time.sleep(PAUSE_S)
            print("measure", flush=True)
            time.sleep(PAUSE_S)
    np.save(cfg["out"], np.column_stack([np.array(bounds, dtype=np.int64).reshape(-1, 2), sent]))
    time.sleep(0.5)
    node.destroy_node()
    lifecycle.shutdown()
    return 0


def measure_stream(
    sensor: str,
    width: int,
    height: int,
    rate: float,
    *,
    seconds: float,
    warmup: float,
    model: str,
    device: str,
    threads: int,
    qos: str,
    executor: str,
    roi: str,
    out_file: str,
    publisher_cpus=None,
    params=None,
) -> dict:
    """Run the node against a publisher process; return the raw measurements of the measured part:
    ``total_ms`` (the node's arrival-to-publish samples), ``stages`` (p50/p99 per stage), ``received``
    (window start, window end, CLOCK_MONOTONIC ns of reception by a listener in this process), ``sent`` (the
    publisher's per-packet record), ``counters_before``/``counters_after`` and ``cpu_percent`` (this process)."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data

    from microexp.infer.smoothing import LatencyStats
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.inference_node import InferenceNode
    from microexp.ros.runner import Runner
    from microexp_msgs.msg import AUPrediction

    topic = f"/latency_bench/{sensor}/events"
    name = "latency_bench_inference"
    runner = Runner(executor, threads=2)
    received: list = []
    try:
        node = runner.add(
            InferenceNode(
                name=name,
                parameter_overrides=overrides(
                    name,
                    None,
                    model=model,
                    device=device,
                    torch_threads=threads,
                    events_topic=topic,
                    sensor=sensor,
                    roi=roi,
                    qos=qos,
                    face_rate_hz=0.0,
                    **(params or {}),
                ),
            )
        )
        listener = runner.add(rclpy.create_node("latency_bench_listener"))
        listener.create_subscription(
            AUPrediction,
            f"/{name}/au",
            lambda m: received.append((m.window_start_us, m.window_end_us, time.monotonic_ns())),
            qos_profile_sensor_data,
        )
        runner.start()
        cfg = {
            "width": width,
            "height": height,
            "rate": rate,
            "seconds": seconds,
            "warmup": warmup,
            "topic": topic,
            "node": name,
            "qos": qos,
            "sensor": sensor,
            "out": out_file,
            "cpus": publisher_cpus,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "microexp.ros.bench.latency", json.dumps(cfg)], stdout=subprocess.PIPE, text=True
        )
        if proc.stdout.readline().strip() != "measure":
            proc.wait(timeout=60)
            raise RuntimeError(f"latency bench: the publisher failed (exit {proc.returncode})")
        node.latency = LatencyStats()
        node.pipeline.latency = LatencyStats()
        before = node.counters()
        n_before = len(received)
        cpu0, wall0 = time.process_time(), time.monotonic()
        proc.wait(timeout=seconds + 120)
        time.sleep(0.6)  # the last window: closed by the idle flush
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        after = node.counters()
        stages = node.latency_summary()
        total = node.latency.samples("total")
    finally:
        runner.close()
    return {
        "total_ms": total,
        "stages": stages,
        "sent": np.load(out_file),
        "received": np.array(received[n_before:], dtype=np.int64).reshape(-1, 3),
        "counters_before": before,
        "counters_after": after,
        "cpu_percent": round(100 * cpu / wall, 1),
    }


if __name__ == "__main__":
    sys.exit(publish_main(json.loads(sys.argv[1])))
