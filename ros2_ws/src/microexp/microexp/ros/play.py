"""`microexp play`: run sensor nodes on files (or the synthetic rig) in one process, the pip install's
stand-in for `ros2 run` / `ros2 launch`. With ``--count`` a subscriber in the same graph counts what
arrives over DDS and, when playback ends, prints one JSON line per run: per topic messages, events,
seq_gaps (and frames for image topics)."""
from __future__ import annotations

import json
import sys
import threading
import time

from microexp.errors import ParameterError


def add_arguments(parser) -> None:
    parser.add_argument("--davis-file", help="AEDAT4 file for the DAVIS346 node")
    parser.add_argument("--evk4-file", help="Prophesee RAW (EVT3) file for the EVK4 node")
    parser.add_argument("--evk4-device", action="store_true",
                        help="EVK4 node in mode:=device (OpenEB): --evk4-file is opened as a device, else a camera")
    parser.add_argument("--webcam-file", help="video file for the webcam node")
    parser.add_argument("--synthetic", action="store_true", help="run the synthetic rig instead of files")
    parser.add_argument("--aus", default="AU12", help="synthetic: the AUs the simulated subject performs ('all' = 21)")
    parser.add_argument("--sensors", default="davis346,evk4,webcam", help="synthetic: which sensors to simulate")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: seed")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (1 = real time, 0 = flat out)")
    parser.add_argument("--loop", action="store_true", help="loop the files (not with --count)")
    parser.add_argument("--count", action="store_true", help="subscribe over DDS and print counts as JSON at the end")
    parser.add_argument("--qos", default=None, choices=("sensor", "reliable"),
                        help="QoS of the sensor topics (default: reliable with --count, else sensor)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")


def _overrides(d: dict) -> list:
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in d.items()]


def build_nodes(args) -> list:
    qos = args.qos or ("reliable" if args.count else "sensor")
    wait = {"wait_for_subscribers_s": 10.0} if args.count else {}
    nodes = []
    if args.synthetic:
        from microexp.ros.synthetic_node import SyntheticRigNode

        nodes.append(SyntheticRigNode(parameter_overrides=_overrides(
            {"rate": args.rate, "qos": qos, "plan": args.aus, "sensors": args.sensors, "seed": args.seed})))
    if args.evk4_file or getattr(args, "evk4_device", False):
        from microexp.ros.evk4_node import Evk4Node

        source = ({"mode": "device", "device_file": args.evk4_file or ""} if getattr(args, "evk4_device", False)
                  else {"mode": "file", "file": args.evk4_file})
        nodes.append(Evk4Node(parameter_overrides=_overrides(
            {**source, "rate": args.rate, "loop": args.loop, "qos": qos, **wait})))
    if args.davis_file:
        from microexp.ros.davis346_node import Davis346Node

        nodes.append(Davis346Node(parameter_overrides=_overrides(
            {"mode": "file", "file": args.davis_file, "rate": args.rate, "loop": args.loop, "qos": qos, **wait})))
    if args.webcam_file:
        from microexp.ros.webcam_node import WebcamNode

        nodes.append(WebcamNode(parameter_overrides=_overrides(
            {"mode": "file", "file": args.webcam_file, "rate": args.rate, "loop": args.loop, "qos": qos, **wait})))
    if not nodes:
        raise ParameterError("play: give at least one of --davis-file, --evk4-file, --webcam-file, --synthetic")
    return nodes


def run(args) -> int:
    if args.count and args.loop:
        raise ParameterError("play: --count and --loop exclude each other (a loop never ends)")
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init()
    executor = MultiThreadedExecutor(num_threads=4)
    nodes = []
    counter = None
    spin = None
    try:
        if args.count:
            from microexp.ros.counter import TopicCounter

            counter = TopicCounter()
            executor.add_node(counter)
        nodes = build_nodes(args)
        for n in nodes:
            executor.add_node(n)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        deadline = time.monotonic() + args.timeout
        while not all(n.finished.is_set() for n in nodes):
            if time.monotonic() > deadline:
                print("play: timeout before playback ended", file=sys.stderr)
                return 1
            time.sleep(0.05)
        if counter is not None:
            published = {t: c for n in nodes for t, c in getattr(n, "published", {}).items()}
            counter.settle(expected=published)
            summary = counter.summary()
            for topic, entry in summary.items():
                entry["published"] = published.get(topic)
            print(json.dumps(summary), flush=True)
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        executor.shutdown(timeout_sec=5.0)
        if spin is not None:
            spin.join(timeout=5.0)  # never leave a thread inside rclpy while the interpreter exits
        for n in nodes + ([counter] if counter else []):
            n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
