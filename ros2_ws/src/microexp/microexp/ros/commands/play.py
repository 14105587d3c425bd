"""`microexp play`: run sensor nodes on files (or the synthetic rig) in one process, the pip install's
stand-in for `ros2 run` / `ros2 launch`.

With ``--count`` a counting subscriber runs in a process of its own (:mod:`microexp.ros.counter`: deep
reader history, serialized intake on a reader thread, payloads decoded behind it), started before the
sensors, which wait for it (``wait_for_subscribers_s``) before playing. When playback ends it prints one
JSON line: per topic ``published`` (what the node sent), ``received`` (what the other process got),
``lost = published - received``, and for event topics ``events``, ``on_events``, ``seq_gaps``,
``seq_missing``, first/last event time (``frames`` for image topics)."""

from __future__ import annotations

import json
import sys
import time

from microexp.errors import MicroexpError, ParameterError


def add_arguments(parser) -> None:
    parser.add_argument("--davis-file", help="AEDAT4 file for the DAVIS346 node")
    parser.add_argument("--evk4-file", help="Prophesee RAW (EVT3) file for the EVK4 node")
    parser.add_argument(
        "--evk4-device",
        action="store_true",
        help="EVK4 node in mode:=device (OpenEB): --evk4-file is opened as a device, else a camera",
    )
    parser.add_argument("--webcam-file", help="video file for the webcam node")
    parser.add_argument("--synthetic", action="store_true", help="run the synthetic rig instead of files")
    parser.add_argument("--aus", default="AU12", help="synthetic: the AUs the simulated subject performs ('all' = 21)")
    parser.add_argument("--sensors", default="davis346,evk4,webcam", help="synthetic: which sensors to simulate")
    parser.add_argument("--seed", type=int, default=0, help="synthetic: seed")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed (1 = real time, 0 = flat out)")
    parser.add_argument("--loop", action="store_true", help="loop the files (not with --count)")
    parser.add_argument("--count", action="store_true", help="subscribe over DDS and print counts as JSON at the end")
    parser.add_argument(
        "--qos",
        default=None,
        choices=("sensor", "reliable"),
        help="QoS of the sensor topics (default: reliable with --count, else sensor)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument(
        "--wait-subscribers",
        type=float,
        default=10.0,
        help="with --count: file playback waits up to this long for the counter (default 10 s)",
    )
    from microexp.ros.dds import add_dds_arguments

    add_dds_arguments(parser)


def _overrides(d: dict) -> list:
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in d.items()]


def build_nodes(args) -> list:
    qos = args.qos or ("reliable" if args.count else "sensor")
    wait = {"wait_for_subscribers_s": float(args.wait_subscribers)} if args.count else {}
    nodes = []
    if args.synthetic:
        from microexp.ros.nodes.synthetic_node import SyntheticRigNode

        nodes.append(
            SyntheticRigNode(
                parameter_overrides=_overrides(
                    {"rate": args.rate, "qos": qos, "plan": args.aus, "sensors": args.sensors, "seed": args.seed}
                )
            )
        )
    if args.evk4_file or getattr(args, "evk4_device", False):
        from microexp.ros.nodes.evk4_node import Evk4Node

        source = (
            {"mode": "device", "device_file": args.evk4_file or ""}
            if getattr(args, "evk4_device", False)
            else {"mode": "file", "file": args.evk4_file}
        )
        nodes.append(
            Evk4Node(
                parameter_overrides=_overrides({**source, "rate": args.rate, "loop": args.loop, "qos": qos, **wait})
            )
        )
    if args.davis_file:
        from microexp.ros.nodes.davis346_node import Davis346Node

        nodes.append(
            Davis346Node(
                parameter_overrides=_overrides(
                    {"mode": "file", "file": args.davis_file, "rate": args.rate, "loop": args.loop, "qos": qos, **wait}
                )
            )
        )
    if args.webcam_file:
        from microexp.ros.nodes.webcam_node import WebcamNode

        nodes.append(
            WebcamNode(
                parameter_overrides=_overrides(
                    {"mode": "file", "file": args.webcam_file, "rate": args.rate, "loop": args.loop, "qos": qos, **wait}
                )
            )
        )
    if not nodes:
        raise ParameterError("play: give at least one of --davis-file, --evk4-file, --webcam-file, --synthetic")
    return nodes


def run(args) -> int:
    if args.count and args.loop:
        raise ParameterError("play: --count and --loop exclude each other (a loop never ends)")
    if not args.timeout > 0:  # also NaN
        raise ParameterError(f"play: --timeout {args.timeout:g}: give a number of seconds above 0")
    from microexp.ros.commands.record import check_input_files

    check_input_files(args)
    from microexp.ros.dds import configure

    configure(args)
    counter = None
    if args.count:
        from microexp.ros.counter import CounterClient

        counter = CounterClient(quiet_s=5.0, timeout_s=max(60.0, args.timeout))
    try:
        published, ok, error = _play(args)
        if counter is not None:
            from microexp.ros.counter import with_loss

            summary = with_loss(counter.finish(published if ok else {}), published)
            counter = None
            if (args.qos or "reliable") == "reliable":
                _warn_best_effort(summary, published)
            print(json.dumps(summary), flush=True)
        if isinstance(error, MicroexpError):
            raise error
        if error:
            print(f"play: {error}", file=sys.stderr)
            return 1
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if counter is not None:
            counter.kill()


def _warn_best_effort(summary: dict, published: dict) -> None:
    """One line per topic that the nodes published reliably but the counter had to take best effort: another
    publisher of that topic, best effort, is on the same ROS domain, and the counts may fall short."""
    import os

    for topic, entry in summary.items():
        if topic in published and entry.get("reliable") is False:
            print(
                f"play: {topic} was counted best effort: another publisher of it, best effort, is on "
                f"ROS_DOMAIN_ID {os.environ.get('ROS_DOMAIN_ID', '0')}; its counts may fall short "
                "(run with a ROS_DOMAIN_ID of its own)",
                file=sys.stderr,
            )


def _play(args) -> tuple[dict, bool, "str | MicroexpError"]:
    """Run the nodes until their playback ends; (published per topic, ended normally, error: a timeout as text, a
    failed input (corrupt or missing file) as the MicroexpError that ends the command)."""
    from microexp.ros.runner import Runner

    runner = Runner("multi", threads=4)
    try:
        nodes = [runner.add(n) for n in build_nodes(args)]
        runner.start()
        deadline = time.monotonic() + args.timeout
        ok, error = True, ""
        while not all(n.finished.is_set() for n in nodes):
            if time.monotonic() > deadline:
                ok, error = False, "timeout before playback ended"
                break
            time.sleep(0.05)
        published = {t: c for n in nodes for t, c in getattr(n, "published", {}).items()}
        if ok:
            from microexp.ros.publishing import data_publishers, wait_acked

            for n in nodes:  # a reliable writer keeps what is not yet acknowledged: wait for it before exiting
                for topic in wait_acked(data_publishers(n), 30.0):
                    print(
                        f"play: {topic}: not every subscriber acknowledged every message within 30 s", file=sys.stderr
                    )
        failed = [n.playback_error for n in nodes if getattr(n, "playback_error", "")]
        if failed:  # a corrupt or missing input: what played is counted, the exit says it failed
            ok, error = True, failed[0]
            return published, ok, MicroexpError(error)
        return published, ok, error
    finally:
        runner.close()  # stops and joins the spinning thread before anything is torn down
