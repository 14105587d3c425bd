"""Benchmark: live inference latency, from the arrival of a window's closing event to the AUPrediction publish.

Set-up, for each stream (default: DAVIS346 346x260 at 1 Mev/s and EVK4 1280x720 at 20 Mev/s, both EVT3):

- a publisher **process** sends EventPackets of 1 ms of sensor time each, paced in real time, encoded once
  before the run with :class:`microexp.events.evt3.Evt3Encoder`. Events: a face-sized blob (Gaussian,
  sigma = 1/12 of the sensor height) moving on a Lissajous path, plus 20 % uniform background activity;
  polarities random. It first sends ``--warmup`` seconds (loads numba's kernels and torch's first-call
  paths), pauses 0.5 s (a stream gap: the node resets), then the measured ``--seconds``;
- this process runs the inference node (:class:`microexp.ros.inference_node.InferenceNode`, the same code as
  ``microexp infer``) on a single-threaded executor (``--executor``), on CPU, with ``torch_threads`` = 2, a fixed ROI (face
  detection off: it runs on its own thread, never on the per-window path), queue 4, max lag 100 ms, and the
  model of ``--model`` or, by default, a **randomly initialised** SNN of the paper's architecture (the trained
  default model does not exist yet; latency does not depend on the weights' values). When the machine has at
  least 4 CPUs the node process is pinned to 2 of them and the publisher to the others.

Reported per stream (``streams``) and at the top level (the larger of the streams' values):

- ``p50_ms``, ``p99_ms``: arrival of the closing packet in the node's subscription callback -> return of
  ``publish()`` of its AUPrediction (the node's ``total`` stage), over the measured windows;
- ``windows``: predictions published in the measured part; ``skipped``: windows skipped (queue overflow or
  older than max lag);
- per stream also ``e2e_p50_ms``/``e2e_p99_ms`` (the closing packet's ``publish()`` in the publisher process ->
  reception of the prediction by a subscriber in this process, both on CLOCK_MONOTONIC: adds DDS transport
  both ways and executor wake-ups), the per-stage p50/p99 (decode, bin, queue, crop, snn, post, publish), the
  achieved event rate, seq gaps (packets lost by best-effort transport) and resets.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STREAMS = {"davis346": (346, 260), "evk4": (1280, 720)}
PACKET_US = 1000


def add_arguments(parser) -> None:
    parser.add_argument("--streams", default="davis346:1,evk4:20",
                        help="comma-separated sensor:Mev/s (sensors: davis346, evk4); default davis346:1,evk4:20")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per stream (default 4)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before (default 1)")
    parser.add_argument("--model", default="", help="SNN checkpoint (default: a randomly initialised SNN)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the node (default 2)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="node device (default cpu)")
    parser.add_argument("--qos", default="sensor", choices=("sensor", "reliable"),
                        help="QoS of the event topic (default sensor: best effort, as drivers publish)")
    parser.add_argument("--executor", default="single", choices=("single", "events", "multi"),
                        help="rclpy executor of the node (default single, as `microexp infer`)")
    parser.add_argument("--repeat", type=int, default=1, help="accepted for `bench all`; one run per stream")


# ----------------------------------------------------------------------------------------- event stream
def blob_packets(width: int, height: int, rate_mev_s: float, seconds: float, t0_us: int, seed: int = 0):
    """Time-sorted events of ``seconds`` in packets of PACKET_US: a list of EVENT_DTYPE arrays."""
    from microexp.events.dtype import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    per_packet = max(1, int(round(rate_mev_s * 1e6 * PACKET_US / 1e6)))
    sigma = height / 12.0
    out = []
    for k in range(int(round(seconds * 1e6 / PACKET_US))):
        start = t0_us + k * PACKET_US
        t = np.sort(rng.integers(start, start + PACKET_US, per_packet))
        s = t / 1e6
        cx = width / 2 + width / 6 * np.sin(2 * np.pi * 0.7 * s)
        cy = height / 2 + height / 8 * np.sin(2 * np.pi * 1.1 * s)
        ev = np.empty(per_packet, dtype=EVENT_DTYPE)
        ev["t"] = t
        noise = rng.random(per_packet) < 0.2
        x = np.where(noise, rng.uniform(0, width, per_packet), cx + rng.normal(0, sigma, per_packet))
        y = np.where(noise, rng.uniform(0, height, per_packet), cy + rng.normal(0, sigma, per_packet))
        ev["x"] = np.clip(x, 0, width - 1)
        ev["y"] = np.clip(y, 0, height - 1)
        ev["p"] = rng.integers(0, 2, per_packet)
        out.append(ev)
    return out


def _publisher_main(cfg: dict) -> int:
    """The publisher process: encode, wait for the node, send warm-up, pause, send the measured part."""
    import rclpy
    from event_camera_msgs.msg import EventPacket

    from microexp.events.codecs import make_encoder
    from microexp.ros.base import qos_named

    if cfg.get("cpus"):
        os.sched_setaffinity(0, set(cfg["cpus"]))
    w, h, rate = cfg["width"], cfg["height"], cfg["rate"]
    enc = make_encoder("evt3", w, h)
    warm = blob_packets(w, h, rate, cfg["warmup"], 1_000_000, seed=1)
    measured_t0 = 1_000_000 + int(cfg["warmup"] * 1e6) + 500_000
    measured = blob_packets(w, h, rate, cfg["seconds"], measured_t0, seed=2)
    payloads = [enc.encode(p)[0] for p in warm + measured]
    bounds = np.array([(int(p["t"][0]), int(p["t"][-1])) for p in warm + measured], dtype=np.int64)
    rclpy.init()
    node = rclpy.create_node("latency_bench_publisher")
    pub = node.create_publisher(EventPacket, cfg["topic"], qos_named(cfg["qos"]))
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    sent = np.zeros(len(payloads), dtype=np.int64)
    msg = EventPacket()
    msg.header.frame_id = cfg["sensor"]
    msg.width, msg.height, msg.encoding, msg.time_base = w, h, "evt3", 0
    n_warm = len(warm)

    def send(i: int) -> None:
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.seq = i
        msg.events = payloads[i]
        sent[i] = time.monotonic_ns()
        pub.publish(msg)

    for phase, idx in (("warmup", range(0, n_warm)), ("measured", range(n_warm, len(payloads)))):
        start = time.monotonic()
        for j, i in enumerate(idx):
            delay = start + j * PACKET_US / 1e6 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            send(i)
        if phase == "warmup":
            time.sleep(0.5)  # longer than the node's gap: the measured part starts a new clip
            print("measure", flush=True)
    np.save(cfg["out"], np.column_stack([bounds, sent]))
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    return 0


# -------------------------------------------------------------------------------------------- the run
def _random_checkpoint(folder: str) -> str:
    import torch

    from microexp.models import AUSpikingNet, SNNConfig, save_checkpoint

    torch.manual_seed(0)
    model = AUSpikingNet(SNNConfig()).eval()
    return str(save_checkpoint(Path(folder) / "random_snn.pt", model,
                               extra={"note": "randomly initialised: latency benchmark only"}))


def _cpu_split():
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 4:
        return cpus[:2], cpus[2:]
    return None, None


def _run_stream(sensor: str, rate: float, args, model: str, folder: str) -> dict:
    import rclpy
    from microexp_msgs.msg import AUPrediction
    from rclpy.qos import qos_profile_sensor_data

    from microexp.ros.compose import overrides
    from microexp.ros.infer_cli import NodeRunner
    from microexp.ros.inference_node import InferenceNode

    width, height = STREAMS[sensor]
    node_cpus, pub_cpus = _cpu_split()
    topic = f"/latency_bench/{sensor}/events"
    side = min(width, height) * 0.6
    roi = f"{(width - side) / 2:.0f},{(height - side) / 2:.0f},{side:.0f},{side:.0f}"
    out_file = str(Path(folder) / f"{sensor}_sent.npy")
    graph = NodeRunner(args.executor)
    received = []
    try:
        node = graph.add(InferenceNode(name="latency_bench_inference", parameter_overrides=overrides(
            "latency_bench_inference", None, model=model, device=args.device, torch_threads=args.threads,
            events_topic=topic, sensor=sensor, roi=roi, qos=args.qos, face_rate_hz=0.0)))
        listener = graph.add(rclpy.create_node("latency_bench_listener"))
        listener.create_subscription(
            AUPrediction, "/latency_bench_inference/au",
            lambda m: received.append((m.window_start_us, m.window_end_us, time.monotonic_ns())),
            qos_profile_sensor_data)
        graph.start()
        cfg = {"width": width, "height": height, "rate": rate, "seconds": args.seconds, "warmup": args.warmup,
               "topic": topic, "qos": args.qos, "sensor": sensor, "out": out_file, "cpus": pub_cpus}
        proc = subprocess.Popen([sys.executable, "-m", "microexp.bench.latency", "--publish", json.dumps(cfg)],
                                stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if line.strip() != "measure":
            proc.wait(timeout=60)
            raise RuntimeError(f"latency bench: the publisher failed (exit {proc.returncode})")
        time.sleep(0.3)  # the warm-up's last window (closed by the idle flush) is published by now
        node.latency = type(node.latency)()
        node.pipeline.latency = type(node.pipeline.latency)()
        base = node.counters()
        n_before = len(received)
        cpu0 = time.process_time()
        wall0 = time.monotonic()
        proc.wait(timeout=args.seconds + 120)
        time.sleep(0.6)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
        counts = node.counters()
        lat = node.latency_summary()
        total = node.latency.samples("total")
    finally:
        graph.close()
    sent = np.load(out_file)
    got = np.array(received[n_before:], dtype=np.int64).reshape(-1, 3)
    e2e = np.array([])
    if got.size:
        closing = np.searchsorted(sent[:, 1], got[:, 1], side="left")  # first packet with an event >= t1
        ok = closing < len(sent)
        e2e = (got[ok, 2] - sent[closing[ok], 2]) / 1e6
    delta = {k: counts.get(k, 0) - base.get(k, 0) for k in ("published", "skipped", "seq_gaps", "resets", "events")}
    result = {
        "sensor": sensor, "width": width, "height": height, "rate_mev_s": rate,
        "achieved_mev_s": round(delta["events"] / args.seconds / 1e6, 2),
        "p50_ms": round(float(np.percentile(total, 50)), 3) if total.size else None,
        "p99_ms": round(float(np.percentile(total, 99)), 3) if total.size else None,
        "max_ms": round(float(total.max()), 3) if total.size else None,
        "windows": int(delta["published"]), "skipped": int(delta["skipped"]),
        "seq_gaps": int(delta["seq_gaps"]), "resets": int(delta["resets"]),
        "e2e_p50_ms": round(float(np.percentile(e2e, 50)), 3) if e2e.size else None,
        "e2e_p99_ms": round(float(np.percentile(e2e, 99)), 3) if e2e.size else None,
        "stages": {k: v for k, v in lat.items() if k not in ("total", "ready")},
        "node_cpu_percent": round(100 * cpu / wall, 1), "roi": roi,
        "node_cpus": node_cpus, "publisher_cpus": pub_cpus,
    }
    return result


def run(args) -> dict:
    import torch

    streams = []
    for item in args.streams.split(","):
        sensor, _, rate = item.partition(":")
        if sensor not in STREAMS or not rate:
            raise SystemExit(f"bench latency: bad stream {item!r} (sensor:Mev/s, sensors {', '.join(STREAMS)})")
        streams.append((sensor, float(rate)))
    node_cpus, _ = _cpu_split()
    before = os.sched_getaffinity(0) if node_cpus else None
    if node_cpus:
        os.sched_setaffinity(0, set(node_cpus))
    try:
        with tempfile.TemporaryDirectory(prefix="microexp_latency_") as folder:
            model = args.model or _random_checkpoint(folder)
            results = {f"{s}_{r:g}mev": _run_stream(s, r, args, model, folder) for s, r in streams}
    finally:
        if before:
            os.sched_setaffinity(0, before)

    def worst(key):
        vals = [r[key] for r in results.values() if r[key] is not None]
        return max(vals) if vals else None

    return {
        "bench": "latency", "p50_ms": worst("p50_ms"), "p99_ms": worst("p99_ms"),
        "windows": sum(r["windows"] for r in results.values()),
        "skipped": sum(r["skipped"] for r in results.values()),
        "goal_p99_ms": 10.0, "device": args.device, "torch_threads": args.threads, "executor": args.executor,
        "model": args.model or "random-init SNN (trained default model not available)",
        "torch": torch.__version__, "streams": results,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", required=True, help=argparse.SUPPRESS)
    sys.exit(_publisher_main(json.loads(parser.parse_args().publish)))
