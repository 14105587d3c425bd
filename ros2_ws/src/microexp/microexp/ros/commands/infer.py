"""`microexp infer`: the inference node in the pip install (the Docker image runs it through
launch/inference.launch.py). Options set node parameters; ``--params-file`` reads ROS 2 parameter files and
``--ros-args ...`` passes the rest to ROS (remappings, log levels, parameter files), as ``ros2 run`` would.
With ``--count N`` or ``--duration S`` it stops by itself and prints one JSON line of counters and latencies."""

from __future__ import annotations

import json
import time

from microexp.errors import ParameterError
from microexp.ros.commands import add_ros_args, ros_argv

# CLI option -> node parameter (only the options given override the parameter files)
_OPTIONS = {
    "model": "model",
    "device": "device",
    "events_topic": "events_topic",
    "frames_topic": "frames_topic",
    "sensor": "sensor",
    "roi": "roi",
    "slice_us": "slice_us",
    "horizon": "horizon",
    "face_rate": "face_rate_hz",
    "gap_ms": "gap_ms",
    "qos": "qos",
    "torch_threads": "torch_threads",
}


# the executors of microexp.ros.runner.Runner (named here: this module is imported without rclpy)
EXECUTORS = ("single", "multi")


def add_arguments(parser) -> None:
    parser.add_argument("--model", help="SNN checkpoint (default: the default model of models/, when present)")
    parser.add_argument("--events-topic", help="EventPacket topic (default /evk4/events)")
    parser.add_argument("--frames-topic", help="image topic for face detection (default: none, fixed ROI)")
    parser.add_argument("--sensor", help="sensor name written into the predictions (default evk4)")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), help="torch device (default auto)")
    parser.add_argument("--roi", help="fixed crop x,y,width,height in event pixels (default: whole sensor)")
    parser.add_argument("--slice-us", type=int, help="window length in µs (default 33000)")
    parser.add_argument("--horizon", type=int, help="windows in the smoothed decision (default 10)")
    parser.add_argument("--face-rate", type=float, help="face detections per second (0 = off; default 5)")
    parser.add_argument("--gap-ms", type=float, help="event pause that ends a clip, ms (default 200)")
    parser.add_argument(
        "--qos",
        choices=("auto", "sensor", "reliable"),
        help="QoS of the subscriptions (default auto: as the publishers offer)",
    )
    parser.add_argument("--torch-threads", type=int, help="CPU threads of torch (default 2)")
    parser.add_argument("--params-file", action="append", default=[], help="ROS 2 parameter file (repeatable)")
    parser.add_argument("--name", default="inference", help="node name (default inference)")
    parser.add_argument("--count", type=int, default=0, help="stop after publishing this many predictions")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="single",
        help="rclpy executor of the node (default single: one thread is enough, inference has its own)",
    )
    add_ros_args(parser)


def run(args) -> int:
    from microexp.config import check_topic_name
    from microexp.ros import lifecycle
    from microexp.ros.compose import overrides
    from microexp.ros.nodes.inference_node import InferenceNode
    from microexp.ros.runner import Runner

    for opt in ("events_topic", "frames_topic"):
        if getattr(args, opt, None):
            check_topic_name(getattr(args, opt), "--" + opt.replace("_", "-"))
    if not args.duration >= 0:  # also NaN
        raise ParameterError(f"infer: --duration {args.duration:g}: give 0 (run until Ctrl-C) or a number of seconds")
    if args.count < 0:
        raise ParameterError(f"infer: --count {args.count}: give 0 (no limit) or a number of predictions")
    values = {param: getattr(args, opt) for opt, param in _OPTIONS.items() if getattr(args, opt) is not None}
    lifecycle.init(ros_argv(args))
    graph = Runner(args.executor, threads=2)
    try:
        node = graph.add(
            InferenceNode(name=args.name, parameter_overrides=overrides(args.name, args.params_file, **values))
        )
        graph.start()
        started = time.monotonic()
        try:
            while True:
                time.sleep(0.05)
                if args.count and node.published >= args.count:
                    break
                if args.duration and time.monotonic() - started >= args.duration:
                    break
        except KeyboardInterrupt:
            pass
        if args.count or args.duration:
            print(
                json.dumps(
                    {
                        "node": node.get_fully_qualified_name(),
                        "events_topic": node.resolve_topic_name(node.p["events_topic"]),
                        "model_id": node.model_id,
                        "device": node.device,
                        **node.counters(),
                        "latency_ms": node.latency_summary(),
                    }
                ),
                flush=True,
            )
        return 0
    finally:
        graph.close()
